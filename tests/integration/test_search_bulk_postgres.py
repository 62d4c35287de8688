"""Search and bulk decisions on PostgreSQL: full-text search with stemming and prefixes,
served by the GIN index of migration 0005, and bulk saves that are all or nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from shared.models import Submission, TrainingExample
from shared.search import message_matches
from shared.seed import seed_default_categories

TEXTS = [
    "There is a huge pothole on Mill Street",
    "Potholes everywhere near the school",
    "The bus to Mill Lane was late again",
    "Bins not collected on Mill Street",
    "Loud music every night",
]


@pytest.fixture
def stored(session) -> dict[str, int]:
    seed_default_categories(session)
    rows = [
        Submission(
            message=message,
            contributor_type="resident",
            category="other",
            predicted_category="other",
            confidence=0.5,
        )
        for message in TEXTS
    ]
    session.add_all(rows)
    session.commit()
    return {row.message: row.id for row in rows}


def found(client, headers, query: str) -> list[str]:
    response = client.get(f"/admin/api/submissions?order=oldest&{query}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return [item["message"] for item in response.get_json()["items"]]


def test_full_text_search_stems_words(client, admin_headers, stored):
    assert found(client, admin_headers, "q=potholes") == TEXTS[:2]
    assert found(client, admin_headers, "q=collecting") == ["Bins not collected on Mill Street"]


def test_full_text_search_matches_prefixes_as_you_type(client, admin_headers, stored):
    assert found(client, admin_headers, "q=pot") == TEXTS[:2]
    assert found(client, admin_headers, "q=mill+str") == [TEXTS[0], TEXTS[3]]


def test_a_query_of_stop_words_only_finds_them_as_on_sqlite(client, admin_headers, stored):
    """ "the" is no word to the full-text search; it still finds what SQLite finds."""
    assert found(client, admin_headers, "q=the") == TEXTS[:3]
    assert found(client, admin_headers, "q=the+school") == [TEXTS[1]]


def test_search_operators_in_the_query_are_plain_words(client, admin_headers, stored):
    assert found(client, admin_headers, "q=mill+%26+!street+|+%3A*") == [TEXTS[0], TEXTS[3]]
    assert found(client, admin_headers, "q=%27%29%28") == TEXTS  # nothing to search for


def test_highlights_cover_the_stemmed_matches(client, admin_headers, stored):
    body = client.get("/admin/api/submissions?q=potholes&order=oldest", headers=admin_headers)
    spans = [
        [item["message"][a:b] for a, b in item["matches"]] for item in body.get_json()["items"]
    ]
    assert spans == [["pothole"], ["Potholes"]]


def test_the_search_uses_the_gin_index(session, stored):
    """The query's expression must be the index's, or PostgreSQL reads every row."""
    session.execute(text("SET LOCAL enable_seqscan = off"))
    clause = message_matches(Submission.message, "pothole", "postgresql")
    compiled = (
        select(Submission.id)
        .where(clause)
        .compile(dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True})
    )
    plan = "\n".join(row[0] for row in session.execute(text(f"EXPLAIN {compiled}")))
    assert "ix_submissions_message_search" in plan, plan
    session.rollback()


def test_training_examples_are_searched_with_the_same_rules(client, admin_headers, session, stored):
    saved = client.post(
        "/admin/api/submissions/bulk-category",
        json={"ids": list(stored.values()), "category": "roads and traffic"},
        headers=admin_headers,
    )
    assert saved.status_code == 200
    body = client.get("/admin/api/training-examples?q=potholes", headers=admin_headers).get_json()
    assert sorted(item["message"] for item in body["items"]) == sorted(TEXTS[:2])


def test_bulk_category_by_filter_saves_every_match_as_training_data(
    client, admin_headers, session, stored
):
    response = client.post(
        "/admin/api/submissions/bulk-category",
        json={"filter": {"q": "mill", "unreviewed": True}, "category": "roads and traffic"},
        headers=admin_headers,
    )
    body = response.get_json()
    assert body["saved"] == 3
    session.expire_all()
    examples = session.scalars(select(TrainingExample).order_by(TrainingExample.id)).all()
    assert [e.id for e in examples] == sorted(item["training_example_id"] for item in body["items"])
    assert sorted(e.message for e in examples) == sorted(t for t in TEXTS if "Mill" in t)
    assert all(e.is_correction and e.corrected_category == "roads and traffic" for e in examples)


def test_bulk_category_with_an_unknown_id_saves_nothing(client, admin_headers, session, stored):
    response = client.post(
        "/admin/api/submissions/bulk-category",
        json={"ids": [*stored.values(), 424242], "category": "housing"},
        headers=admin_headers,
    )
    assert response.status_code == 404
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(TrainingExample)) == 0
    assert session.scalar(select(func.count()).where(Submission.reviewed_at.is_not(None))) == 0


def test_bulk_delete_and_relabel_of_training_data(client, admin_headers, session, stored):
    items = client.post(
        "/admin/api/submissions/bulk-category",
        json={"ids": list(stored.values()), "category": "other"},
        headers=admin_headers,
    ).get_json()["items"]
    example_ids = [item["training_example_id"] for item in items]

    refused = client.post(
        "/admin/api/training-examples/bulk-relabel",
        json={"ids": [*example_ids, 424242], "category": "housing"},
        headers=admin_headers,
    )
    relabelled = client.post(
        "/admin/api/training-examples/bulk-relabel",
        json={"ids": example_ids[:2], "category": "roads and traffic"},
        headers=admin_headers,
    )
    deleted = client.post(
        "/admin/api/training-examples/bulk-delete",
        json={"ids": example_ids[2:]},
        headers=admin_headers,
    )

    assert refused.status_code == 404
    assert relabelled.get_json()["relabelled"] == 2
    assert deleted.get_json() == {"deleted": 3}
    session.expire_all()
    left = session.scalars(select(TrainingExample)).all()
    assert sorted(e.id for e in left) == sorted(example_ids[:2])
    assert {e.corrected_category for e in left} == {"roads and traffic"}
    assert {session.get(Submission, e.submission_id).category for e in left} == {
        "roads and traffic"
    }
