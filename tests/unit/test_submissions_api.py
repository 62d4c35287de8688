"""The public and admin submission API over HTTP with a fake classifier (SQLite)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared.deployment.active_model import ActiveModel
from shared.models import Submission, TrainingExample
from shared.seed import seed_default_categories
from tests.unit.fakes import KeywordClassifier
from web.analyzer import SubmissionAnalyzer


def use_classifier(app, classifier) -> None:
    active = ActiveModel(
        app.config["SORTLOOP"],
        app.extensions["sortloop_sessions"],
        load_base=lambda _config: classifier,
    )
    app.extensions["sortloop_analyzer"] = SubmissionAnalyzer(active)


@pytest.fixture
def fake_app(app, session):
    seed_default_categories(session)
    session.commit()
    use_classifier(app, KeywordClassifier())
    return app


@pytest.fixture
def api(fake_app):
    return fake_app.test_client()


def submit(client, message="The housing office never answers", contributor_type="resident"):
    return client.post(
        "/api/submissions", json={"message": message, "contributor_type": contributor_type}
    )


def test_a_submission_answers_201_with_its_category(api):
    response = submit(api)
    assert response.status_code == 201
    body = response.get_json()
    assert body["category"] == "housing"
    assert body["model_version"].startswith("base:")
    assert 0 < body["confidence"] <= 1


def test_a_classifier_failure_still_answers_201_with_no_category(app, session):
    seed_default_categories(session)
    session.commit()
    use_classifier(app, KeywordClassifier(fail=True))
    response = submit(app.test_client())
    assert response.status_code == 201
    assert response.get_json()["category"] is None
    stored = session.get(Submission, response.get_json()["id"])
    assert "exploded" in stored.classification_error


@pytest.mark.parametrize(
    "body",
    [
        {"message": "", "contributor_type": "resident"},
        {"message": "x" * 5001, "contributor_type": "resident"},
        {"message": "fine", "contributor_type": "martian"},
        {"contributor_type": "resident"},
        ["not", "an", "object"],
    ],
)
def test_bad_input_answers_400_json(api, session, body):
    response = api.post("/api/submissions", json=body)
    assert response.status_code == 400
    assert "error" in response.get_json()
    assert session.scalar(select(func.count()).select_from(Submission)) == 0


def test_the_public_endpoint_is_rate_limited(config, session):
    from web import create_app

    app = create_app(config.with_overrides(public_rate_limit="2 per minute"))
    seed_default_categories(session)
    session.commit()
    use_classifier(app, KeywordClassifier())
    client = app.test_client()
    assert [submit(client).status_code for _ in range(3)] == [201, 201, 429]
    assert "error" in submit(client).get_json()


def test_changing_a_category_over_the_api_creates_a_training_example(api, admin_headers, session):
    submission_id = submit(api).get_json()["id"]
    response = api.post(
        f"/admin/api/submissions/{submission_id}/category",
        json={"category": "other"},
        headers=admin_headers,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["is_correction"] is True and body["category"] == "other"
    assert session.get(TrainingExample, body["training_example_id"]) is not None


def test_unknown_category_is_400_and_unknown_submission_is_404(api, admin_headers):
    submission_id = submit(api).get_json()["id"]
    bad = api.post(
        f"/admin/api/submissions/{submission_id}/category",
        json={"category": "nope"},
        headers=admin_headers,
    )
    missing = api.post(
        "/admin/api/submissions/999/category", json={"category": "other"}, headers=admin_headers
    )
    assert bad.status_code == 400 and "error" in bad.get_json()
    assert missing.status_code == 404 and "error" in missing.get_json()


def test_listing_submissions_pages_and_filters(api, admin_headers):
    for text in ("housing damp", "bus late", "housing rent"):
        submit(api, message=text)
    everything = api.get("/admin/api/submissions?per_page=2", headers=admin_headers).get_json()
    assert everything["total"] == 3 and len(everything["items"]) == 2
    housing = api.get("/admin/api/submissions?category=housing", headers=admin_headers).get_json()
    assert {item["message"] for item in housing["items"]} == {"housing damp", "housing rent"}
    bad = api.get("/admin/api/submissions?page=0", headers=admin_headers)
    assert bad.status_code == 400


def test_the_review_queue_folds_near_duplicates_and_one_decision_covers_them(
    api, admin_headers, session
):
    first, *copies = [
        submit(api, message=text).get_json()["id"]
        for text in ("Damp in my flat again", "damp in my flat", "DAMP IN MY FLAT!")
    ]
    submit(api, message="the bus was late")
    queue = "/admin/api/submissions?unreviewed=1&fold_similar=1&order=oldest"

    listed = api.get(queue, headers=admin_headers).get_json()

    assert (listed["total"], listed["folded"]) == (2, 2)
    [group] = [item for item in listed["items"] if item["similar"]]
    assert group["id"] == first
    assert [other["id"] for other in group["similar"]] == copies
    plain = api.get("/admin/api/submissions?unreviewed=1", headers=admin_headers).get_json()
    assert plain["total"] == 4 and "folded" not in plain and "similar" not in plain["items"][0]

    # An unknown id among them: 404, and nothing is saved.
    refused = api.post(
        f"/admin/api/submissions/{first}/category",
        json={"category": "housing", "similar_ids": [*copies, 999]},
        headers=admin_headers,
    )
    assert refused.status_code == 404
    assert session.scalar(select(func.count()).select_from(TrainingExample)) == 0
    bad = api.post(
        f"/admin/api/submissions/{first}/category",
        json={"category": "housing", "similar_ids": "all"},
        headers=admin_headers,
    )
    assert bad.status_code == 400 and "similar_ids" in bad.get_json()["error"]

    saved = api.post(
        f"/admin/api/submissions/{first}/category",
        json={"category": "housing", "similar_ids": copies},
        headers=admin_headers,
    ).get_json()

    assert [other["id"] for other in saved["also_saved"]] == copies
    session.expire_all()
    examples = session.scalars(select(TrainingExample)).all()
    assert sorted(e.submission_id for e in examples) == sorted([first, *copies])
    assert {e.corrected_category for e in examples} == {"housing"}
    left = api.get(queue, headers=admin_headers).get_json()
    assert [item["message"] for item in left["items"]] == ["the bus was late"]


def test_categories_can_be_added_listed_and_edited(api, admin_headers):
    created = api.post(
        "/admin/api/categories",
        json={"name": "street lighting", "description": "broken street lamps"},
        headers=admin_headers,
    )
    assert created.status_code == 201
    duplicate = api.post(
        "/admin/api/categories",
        json={"name": "street lighting", "description": "again"},
        headers=admin_headers,
    )
    assert duplicate.status_code == 409
    no_description = api.post("/admin/api/categories", json={"name": "x"}, headers=admin_headers)
    assert no_description.status_code == 400
    category_id = created.get_json()["id"]
    edited = api.patch(
        f"/admin/api/categories/{category_id}",
        json={"description": "street lamps that are out", "active": False},
        headers=admin_headers,
    )
    assert edited.get_json()["active"] is False
    names = [
        c["name"]
        for c in api.get("/admin/api/categories", headers=admin_headers).get_json()["items"]
    ]
    assert "street lighting" in names
