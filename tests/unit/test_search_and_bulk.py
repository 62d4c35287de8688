"""Search (q), page sizes, bulk category and bulk training-data actions over the admin API
(SQLite; the PostgreSQL full-text path is in tests/integration/test_search_bulk_postgres.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared.models import Submission, TrainingExample
from shared.search import highlighted, match_spans, query_words
from tests.unit.test_submissions_api import submit

pytest_plugins = ["tests.unit.test_submissions_api"]


def count(session, model) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def listed(api, headers, url) -> dict:
    response = api.get(url, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def messages(api):
    texts = [
        "There is a huge pothole on Mill Street",
        "Potholes everywhere near the school",
        "The bus to Mill Lane was late again",
        "Bins not collected on Mill Street",
        "Loud music every night",
    ]
    return {text: submit(api, message=text).get_json()["id"] for text in texts}


def test_q_finds_submissions_holding_every_word(api, admin_headers, messages):
    body = listed(api, admin_headers, "/admin/api/submissions?q=mill%20street&order=oldest")
    assert [item["message"] for item in body["items"]] == [
        "There is a huge pothole on Mill Street",
        "Bins not collected on Mill Street",
    ]
    assert body["total"] == 2


def test_q_matches_word_prefixes_and_ignores_case(api, admin_headers, messages):
    body = listed(api, admin_headers, "/admin/api/submissions?q=POTHOLE&order=oldest")
    assert [item["id"] for item in body["items"]] == [
        messages["There is a huge pothole on Mill Street"],
        messages["Potholes everywhere near the school"],
    ]


def test_search_answers_the_spans_to_highlight(api, admin_headers, messages):
    [item] = listed(api, admin_headers, "/admin/api/submissions?q=bus+lane")["items"]
    message = item["message"]
    assert [message[start:end] for start, end in item["matches"]] == ["bus", "Lane"]
    plain = listed(api, admin_headers, "/admin/api/submissions")["items"][0]
    assert "matches" not in plain


def test_q_combines_with_the_other_filters(api, admin_headers, messages):
    bus = messages["The bus to Mill Lane was late again"]
    api.post(
        f"/admin/api/submissions/{bus}/category",
        json={"category": "public transport"},
        headers=admin_headers,
    )
    body = listed(api, admin_headers, "/admin/api/submissions?q=mill&category=public%20transport")
    assert [item["id"] for item in body["items"]] == [bus]
    unreviewed = listed(api, admin_headers, "/admin/api/submissions?q=mill&unreviewed=1")
    assert bus not in [item["id"] for item in unreviewed["items"]]
    assert unreviewed["total"] == 2


def test_q_of_stop_words_only_matches_the_words_as_on_postgresql(api, admin_headers, messages):
    body = listed(api, admin_headers, "/admin/api/submissions?q=the&order=oldest")
    assert [item["message"] for item in body["items"]] == list(messages)[:3]


def test_q_made_of_punctuation_only_finds_everything(api, admin_headers, messages):
    body = listed(api, admin_headers, "/admin/api/submissions?q=%22%27%25*")
    assert body["total"] == len(messages)


def test_an_empty_q_is_no_search(api, admin_headers, messages):
    body = listed(api, admin_headers, "/admin/api/submissions?q=&fold_similar=1")
    assert body["total"] == len(messages)
    examples = listed(api, admin_headers, "/admin/api/training-examples?q=")
    assert examples["total"] == 0
    saved = api.post(
        "/admin/api/submissions/bulk-category",
        json={"filter": {"q": "", "unreviewed": True}, "category": "other"},
        headers=admin_headers,
    )
    assert saved.get_json()["saved"] == len(messages)


@pytest.mark.parametrize("q", ["x" * 201, "bad\x00word"])
def test_a_bad_q_is_a_400_naming_it(api, admin_headers, q):
    response = api.get("/admin/api/submissions", query_string={"q": q}, headers=admin_headers)
    assert response.status_code == 400
    assert "q" in response.get_json()["error"]


@pytest.mark.parametrize("size", [25, 50, 100, 200])
def test_every_page_size_the_pages_offer_is_served(api, admin_headers, session, size):
    session.add_all(
        Submission(message=f"message {n}", contributor_type="resident") for n in range(201)
    )
    session.commit()
    body = listed(api, admin_headers, f"/admin/api/submissions?per_page={size}")
    assert (len(body["items"]), body["per_page"], body["total"]) == (size, size, 201)


def test_per_page_over_200_is_refused(api, admin_headers):
    response = api.get("/admin/api/submissions?per_page=201", headers=admin_headers)
    assert response.status_code == 400 and "per_page" in response.get_json()["error"]


def test_bulk_category_by_ids_saves_each_as_a_training_example(
    api, admin_headers, session, messages
):
    ids = [messages["Bins not collected on Mill Street"], messages["Loud music every night"]]
    response = api.post(
        "/admin/api/submissions/bulk-category",
        json={"ids": ids, "category": "waste and recycling"},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["saved"] == 2 and body["category"] == "waste and recycling"
    assert [item["id"] for item in body["items"]] == ids
    session.expire_all()
    for item in body["items"]:
        example = session.get(TrainingExample, item["training_example_id"])
        assert example.submission_id == item["id"]
        assert example.corrected_category == "waste and recycling"
        assert example.is_correction is item["is_correction"]
        assert session.get(Submission, item["id"]).reviewed_at is not None


def test_bulk_category_by_filter_covers_every_matching_submission(
    api, admin_headers, session, messages
):
    response = api.post(
        "/admin/api/submissions/bulk-category",
        json={"filter": {"q": "mill", "unreviewed": True}, "category": "roads and traffic"},
        headers=admin_headers,
    )
    assert response.get_json()["saved"] == 3
    session.expire_all()
    saved = session.scalars(select(TrainingExample)).all()
    assert sorted(example.message for example in saved) == sorted(
        text for text in messages if "Mill" in text
    )
    again = api.post(
        "/admin/api/submissions/bulk-category",
        json={"filter": {"q": "mill", "unreviewed": True}, "category": "roads and traffic"},
        headers=admin_headers,
    )
    assert again.get_json() == {"saved": 0, "category": "roads and traffic", "items": []}


def test_a_second_bulk_decision_updates_the_same_examples(api, admin_headers, session, messages):
    ids = list(messages.values())[:2]
    for category in ("housing", "other"):
        api.post(
            "/admin/api/submissions/bulk-category",
            json={"ids": ids, "category": category},
            headers=admin_headers,
        )
    assert count(session, TrainingExample) == 2
    assert {e.corrected_category for e in session.scalars(select(TrainingExample))} == {"other"}


def test_bulk_category_with_an_unknown_id_is_a_404_and_saves_nothing(
    api, admin_headers, session, messages
):
    response = api.post(
        "/admin/api/submissions/bulk-category",
        json={"ids": [*messages.values(), 99999], "category": "housing"},
        headers=admin_headers,
    )
    assert response.status_code == 404
    assert "99999" in response.get_json()["error"]
    assert count(session, TrainingExample) == 0
    assert all(s.reviewed_at is None for s in session.scalars(select(Submission)))


@pytest.mark.parametrize(
    "body",
    [
        {"ids": [1], "category": "no such category"},
        {"ids": [1], "filter": {}, "category": "housing"},
        {"category": "housing"},
        {"ids": [], "category": "housing"},
        {"ids": ["1"], "category": "housing"},
        {"ids": [True], "category": "housing"},
        {"filter": {"unreviewed": "maybe"}, "category": "housing"},
        {"filter": {"q": "x" * 201}, "category": "housing"},
        {"ids": [1]},
    ],
)
def test_bad_bulk_bodies_are_400_and_save_nothing(api, admin_headers, session, messages, body):
    response = api.post("/admin/api/submissions/bulk-category", json=body, headers=admin_headers)
    assert response.status_code == 400, response.get_json()
    assert "error" in response.get_json()
    assert count(session, TrainingExample) == 0


def test_bulk_category_needs_an_admin(api, messages):
    response = api.post(
        "/admin/api/submissions/bulk-category", json={"ids": [1], "category": "housing"}
    )
    assert response.status_code == 401


def test_clearing_a_decision_undoes_it(api, admin_headers, session, messages):
    submission_id = messages["Loud music every night"]
    api.post(
        f"/admin/api/submissions/{submission_id}/category",
        json={"category": "housing"},
        headers=admin_headers,
    )
    response = api.post(
        "/admin/api/submissions/clear-category",
        json={"ids": [submission_id]},
        headers=admin_headers,
    )
    assert response.get_json() == {"cleared": 1}
    session.expire_all()
    submission = session.get(Submission, submission_id)
    assert submission.reviewed_at is None
    assert submission.category == submission.predicted_category
    assert count(session, TrainingExample) == 0
    missing = api.post(
        "/admin/api/submissions/clear-category", json={"ids": [99999]}, headers=admin_headers
    )
    assert missing.status_code == 404


def test_training_examples_can_be_searched(api, admin_headers, messages):
    api.post(
        "/admin/api/submissions/bulk-category",
        json={"ids": list(messages.values()), "category": "other"},
        headers=admin_headers,
    )
    body = listed(api, admin_headers, "/admin/api/training-examples?q=street&per_page=100")
    assert sorted(item["message"] for item in body["items"]) == [
        "Bins not collected on Mill Street",
        "There is a huge pothole on Mill Street",
    ]
    assert all(item["matches"] for item in body["items"])


def saved_examples(api, headers, messages) -> list[int]:
    body = api.post(
        "/admin/api/submissions/bulk-category",
        json={"ids": list(messages.values()), "category": "other"},
        headers=headers,
    ).get_json()
    return [item["training_example_id"] for item in body["items"]]


def test_training_examples_are_deleted_in_bulk(api, admin_headers, session, messages):
    example_ids = saved_examples(api, admin_headers, messages)
    response = api.post(
        "/admin/api/training-examples/bulk-delete",
        json={"ids": example_ids[:3]},
        headers=admin_headers,
    )
    assert response.get_json() == {"deleted": 3}
    session.expire_all()
    assert sorted(e.id for e in session.scalars(select(TrainingExample))) == example_ids[3:]
    # The submissions keep their category.
    assert {s.category for s in session.scalars(select(Submission))} == {"other"}


def test_training_examples_are_relabelled_in_bulk_with_their_submissions(
    api, admin_headers, session, messages
):
    example_ids = saved_examples(api, admin_headers, messages)
    response = api.post(
        "/admin/api/training-examples/bulk-relabel",
        json={"ids": example_ids[:2], "category": "roads and traffic"},
        headers=admin_headers,
    )
    body = response.get_json()
    assert body["relabelled"] == 2 and body["category"] == "roads and traffic"
    session.expire_all()
    for item in body["items"]:
        example = session.get(TrainingExample, item["id"])
        assert example.corrected_category == "roads and traffic"
        assert example.is_correction == (example.original_category != "roads and traffic")
        assert session.get(Submission, example.submission_id).category == "roads and traffic"


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/admin/api/training-examples/bulk-delete", {}),
        ("/admin/api/training-examples/bulk-relabel", {"category": "housing"}),
    ],
)
def test_bulk_training_data_with_an_unknown_id_is_a_404_and_changes_nothing(
    api, admin_headers, session, messages, path, extra
):
    example_ids = saved_examples(api, admin_headers, messages)
    response = api.post(path, json={"ids": [*example_ids, 99999], **extra}, headers=admin_headers)
    assert response.status_code == 404
    session.expire_all()
    examples = session.scalars(select(TrainingExample)).all()
    assert len(examples) == len(example_ids)
    assert {e.corrected_category for e in examples} == {"other"}


def test_relabelling_to_an_unknown_category_is_a_400(api, admin_headers, session, messages):
    example_ids = saved_examples(api, admin_headers, messages)
    response = api.post(
        "/admin/api/training-examples/bulk-relabel",
        json={"ids": example_ids, "category": "nope"},
        headers=admin_headers,
    )
    assert response.status_code == 400
    session.expire_all()
    assert {e.corrected_category for e in session.scalars(select(TrainingExample))} == {"other"}


def test_query_words_keep_letters_and_digits_only():
    assert query_words("Pot-holes & 'Mill' | st:* 42") == ["pot", "holes", "mill", "st", "42"]


def test_highlighting_marks_prefixes_and_stems():
    text = "A pothole, then potholes"
    assert [text[a:b] for a, b in match_spans(text, "potholes")] == ["pothole", "potholes"]
    assert highlighted("Mill Street", "mill") == [("Mill", True), (" Street", False)]
    assert highlighted("no match", "zzz") == [("no match", False)]
