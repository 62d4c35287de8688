"""Submissions end to end over HTTP against PostgreSQL, with the real packaged MiniLM.

One app (and so one loaded classifier) is shared by the module; tables are emptied
before every test by the tier's autouse fixture.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from shared.models import AdminUser, Submission, TrainingExample
from shared.seed import seed_default_categories

ADMIN_PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def app(config, engine):
    from web import create_app

    app = create_app(config.with_overrides(public_rate_limit="10000 per minute"))
    app.config.update(TESTING=True)  # CSRF stays on: WTF_CSRF_ENABLED is not touched
    assert app.config.get("WTF_CSRF_ENABLED", True) is True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def categories(session):
    seed_default_categories(session)
    session.commit()


@pytest.fixture
def admin(session) -> str:
    user = AdminUser(username="ann")
    user.set_password(ADMIN_PASSWORD)
    session.add(user)
    session.commit()
    return "ann"


def csrf_token_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "page has no CSRF meta tag"
    return match.group(1)


@pytest.fixture
def browser(app, admin):
    """A test client logged in through the real login form."""
    client = app.test_client()
    token = csrf_token_of(client.get("/admin/login").get_data(as_text=True))
    response = client.post(
        "/admin/login", data={"username": admin, "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def submit(client, message="There is a huge pothole on Mill Street", kind="resident"):
    return client.post("/api/submissions", json={"message": message, "contributor_type": kind})


def count(session, model) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def test_a_submission_is_classified_by_the_base_model_and_stored(client, categories, session):
    response = submit(client)
    assert response.status_code == 201
    body = response.get_json()
    assert body["category"] == "roads and traffic"
    assert body["model_version"] == "base:all-MiniLM-L6-v2"
    assert 0 < body["confidence"] <= 1
    stored = session.get(Submission, body["id"])
    assert stored.category == stored.predicted_category == "roads and traffic"
    assert stored.model_version == "base:all-MiniLM-L6-v2"
    assert sum(stored.scores.values()) == pytest.approx(1.0)
    health = client.get("/healthz").get_json()
    assert health["model_version"] == "base:all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    "body",
    [
        {"message": "", "contributor_type": "resident"},
        {"message": "    ", "contributor_type": "resident"},
        {"message": "x" * 5001, "contributor_type": "resident"},
        {"message": "ok message", "contributor_type": "pirate"},
        {"message": "ok message"},
        {"contributor_type": "resident"},
        {"message": 12345, "contributor_type": "resident"},
        "just a string",
        None,
    ],
    ids=[
        "empty",
        "blank",
        "too-long",
        "unknown-type",
        "no-type",
        "no-message",
        "number",
        "string",
        "no-body",
    ],
)
def test_bad_input_answers_400_and_stores_nothing(client, categories, session, body):
    if body is None:
        response = client.post("/api/submissions", data="not json", content_type="text/plain")
    else:
        response = client.post("/api/submissions", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]
    assert count(session, Submission) == 0


def test_the_public_form_shows_a_confirmation(client, categories, session):
    page = client.get("/").get_data(as_text=True)
    assert '<label for="message">' in page and '<label for="contributor_type">' in page
    response = client.post(
        "/",
        data={
            "message": "The playground swings are broken",
            "contributor_type": "visitor",
            "csrf_token": csrf_token_of(page),
        },
    )
    assert response.status_code == 201
    assert "your message was received" in response.get_data(as_text=True)
    assert count(session, Submission) == 1


def test_a_form_post_without_csrf_token_is_refused(client, categories, session):
    response = client.post(
        "/", data={"message": "The playground swings are broken", "contributor_type": "visitor"}
    )
    assert response.status_code == 400
    assert count(session, Submission) == 0


def test_an_admin_form_post_without_csrf_token_is_refused(browser, categories, session):
    submission_id = submit(browser).get_json()["id"]
    response = browser.post(
        f"/admin/submissions/{submission_id}/category", data={"category": "housing"}
    )
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert count(session, TrainingExample) == 0
    json_without_token = browser.post(
        f"/admin/api/submissions/{submission_id}/category", json={"category": "housing"}
    )
    assert json_without_token.status_code == 400
    assert count(session, TrainingExample) == 0


@pytest.mark.parametrize(
    "path", ["/admin/submissions", "/admin/training-data", "/admin/categories"]
)
def test_anonymous_users_are_sent_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/admin/api/submissions"),
        ("post", "/admin/api/submissions/1/category"),
        ("get", "/admin/api/categories"),
        ("post", "/admin/api/categories"),
        ("get", "/admin/api/training-stats"),
        ("get", "/admin/api/training-examples"),
        ("delete", "/admin/api/training-example/1"),
        ("get", "/admin/api/model-info"),
    ],
)
def test_anonymous_api_calls_get_401(client, method, path):
    response = getattr(client, method)(path, json={})
    assert response.status_code == 401
    assert "error" in response.get_json()


def test_a_correction_and_a_confirmation_each_create_the_right_example(
    client, categories, admin_headers, session
):
    pothole = submit(client).get_json()
    bins = submit(client, "The bins on my street were not collected this week").get_json()

    corrected = client.post(
        f"/admin/api/submissions/{pothole['id']}/category",
        json={"category": "housing"},
        headers=admin_headers,
    ).get_json()
    confirmed = client.post(
        f"/admin/api/submissions/{bins['id']}/category",
        json={"category": bins["category"]},
        headers=admin_headers,
    ).get_json()

    assert corrected["is_correction"] is True and confirmed["is_correction"] is False
    session.expire_all()
    correction = session.get(TrainingExample, corrected["training_example_id"])
    assert correction.original_category == "roads and traffic"
    assert correction.corrected_category == "housing"
    assert correction.confidence_score == pytest.approx(pothole["confidence"])
    assert correction.message == "There is a huge pothole on Mill Street"
    assert correction.contributor_type == "resident"
    confirmation = session.get(TrainingExample, confirmed["training_example_id"])
    assert confirmation.original_category == confirmation.corrected_category == bins["category"]
    listed = client.get("/admin/api/submissions", headers=admin_headers).get_json()
    assert {item["id"]: item["category"] for item in listed["items"]}[pothole["id"]] == "housing"


def test_a_repeated_change_updates_the_example(client, categories, admin_headers, session):
    submission_id = submit(client).get_json()["id"]
    url = f"/admin/api/submissions/{submission_id}/category"
    first = client.post(url, json={"category": "housing"}, headers=admin_headers).get_json()
    second = client.post(
        url, json={"category": "roads and traffic"}, headers=admin_headers
    ).get_json()
    assert first["training_example_id"] == second["training_example_id"]
    assert second["is_correction"] is False
    assert count(session, TrainingExample) == 1


def test_unknown_category_is_400_and_unknown_submission_404(client, categories, admin_headers):
    submission_id = submit(client).get_json()["id"]
    bad = client.post(
        f"/admin/api/submissions/{submission_id}/category",
        json={"category": "ufo sightings"},
        headers=admin_headers,
    )
    assert bad.status_code == 400
    missing = client.post(
        "/admin/api/submissions/424242/category",
        json={"category": "housing"},
        headers=admin_headers,
    )
    assert missing.status_code == 404


def test_training_stats_add_up(client, categories, admin_headers):
    messages = [
        ("There is a huge pothole on Mill Street", "roads and traffic"),
        ("The bus to the station is late every day", "public transport"),
        ("My neighbours play loud music all night", "noise and nuisance"),
        ("There is a huge pothole on Mill Street", "housing"),  # same text, other label
    ]
    for message, category in messages:
        submission_id = submit(client, message).get_json()["id"]
        client.post(
            f"/admin/api/submissions/{submission_id}/category",
            json={"category": category},
            headers=admin_headers,
        )
    stats = client.get("/admin/api/training-stats", headers=admin_headers).get_json()
    assert stats["total"] == 4
    assert stats["corrections"] + stats["confirmations"] == 4
    assert stats["corrections"] >= 1
    assert sum(stats["per_category"].values()) == 4
    assert stats["per_category"]["parks and green spaces"] == 0
    assert stats["quality"]["duplicates"] == 1 and stats["quality"]["conflicts"] == 1
    assert isinstance(stats["quality"]["warnings"], list) and stats["quality"]["warnings"]
    assert stats["ready"] is False and stats["min_training_examples"] == 20
    examples = client.get(
        "/admin/api/training-examples?is_correction=true", headers=admin_headers
    ).get_json()
    assert examples["total"] == stats["corrections"]
    assert {"id", "message", "original_category", "corrected_category", "is_correction",
            "used_in_training"} <= set(examples["items"][0])  # fmt: skip


def test_delete_works_and_a_second_delete_is_404(client, categories, admin_headers, session):
    submission_id = submit(client).get_json()["id"]
    example_id = client.post(
        f"/admin/api/submissions/{submission_id}/category",
        json={"category": "housing"},
        headers=admin_headers,
    ).get_json()["training_example_id"]
    first = client.delete(f"/admin/api/training-example/{example_id}", headers=admin_headers)
    second = client.delete(f"/admin/api/training-example/{example_id}", headers=admin_headers)
    assert first.status_code == 204
    assert second.status_code == 404 and "error" in second.get_json()
    assert count(session, TrainingExample) == 0
    assert count(session, Submission) == 1  # the submission itself stays


def test_categories_api_adds_and_refuses_duplicates(client, categories, admin_headers):
    created = client.post(
        "/admin/api/categories",
        json={"name": "street lighting", "description": "street lamps that are broken or dark"},
        headers=admin_headers,
    )
    assert created.status_code == 201
    again = client.post(
        "/admin/api/categories",
        json={"name": "Street Lighting", "description": "again"},
        headers=admin_headers,
    )
    assert again.status_code == 409
    # The new category is read by the model at once.
    body = submit(client, "The street lamp outside my house has been dark for a week").get_json()
    assert body["category"] == "street lighting"


def test_model_info_reports_the_base_model(client, admin_headers):
    info = client.get("/admin/api/model-info", headers=admin_headers).get_json()
    assert info["kind"] == "base"
    assert info["version"] == "base:all-MiniLM-L6-v2"
    assert info["base_model"] == "all-MiniLM-L6-v2"
    assert info["run_id"] is None


# -- the admin pages, logged in through the real form ---------------------------------


def test_an_admin_corrects_a_category_inline_on_the_page(browser, categories, session):
    submission_id = submit(browser).get_json()["id"]
    page = browser.get("/admin/submissions?order=uncertain&unreviewed=1").get_data(as_text=True)
    assert f'id="submission-{submission_id}"' in page
    response = browser.post(
        f"/admin/submissions/{submission_id}/category",
        data={
            "category": "housing",
            "csrf_token": csrf_token_of(page),
            "next": "/admin/submissions?order=uncertain",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/submissions?order=uncertain")
    example = session.scalar(select(TrainingExample))
    assert example.corrected_category == "housing" and example.is_correction is True
    reviewed_hidden = browser.get("/admin/submissions?unreviewed=1").get_data(as_text=True)
    assert f'id="submission-{submission_id}"' not in reviewed_hidden


def test_the_browser_can_use_the_json_api_with_the_csrf_header(browser, categories, session):
    submission_id = submit(browser).get_json()["id"]
    token = csrf_token_of(browser.get("/admin/submissions").get_data(as_text=True))
    response = browser.post(
        f"/admin/api/submissions/{submission_id}/category",
        json={"category": "roads and traffic"},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 200
    assert response.get_json()["is_correction"] is False


def test_submitted_html_is_shown_escaped(browser, categories, admin_headers):
    submission_id = submit(browser, "<script>alert(1)</script> pothole").get_json()["id"]
    browser.post(
        f"/admin/api/submissions/{submission_id}/category",
        json={"category": "housing"},
        headers=admin_headers,
    )
    for path in ("/admin/submissions", "/admin/training-data"):
        page = browser.get(path).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_category_is_added_and_edited_on_the_page(browser, categories, session):
    page = browser.get("/admin/categories").get_data(as_text=True)
    assert "The description is what the zero-shot model reads" in page
    token = csrf_token_of(page)
    browser.post(
        "/admin/categories",
        data={"name": "street lighting", "description": "dark lamps", "csrf_token": token},
    )
    from shared.models import Category

    session.expire_all()
    category = session.scalar(select(Category).where(Category.name == "street lighting"))
    assert category is not None and category.active
    browser.post(
        f"/admin/categories/{category.id}",
        data={"description": "street lamps that are dark", "csrf_token": token},
    )
    session.expire_all()
    assert category.description == "street lamps that are dark"
    assert category.active is False  # the checkbox was not sent
    duplicate = browser.post(
        "/admin/categories",
        data={"name": "street lighting", "description": "x", "csrf_token": token},
        follow_redirects=True,
    )
    assert "exists already" in duplicate.get_data(as_text=True)


def test_training_data_page_links_quality_problems_and_deletes_after_confirming(
    browser, categories, admin_headers, session
):
    ids = []
    for category in ("housing", "roads and traffic"):
        submission_id = submit(browser, "pothole").get_json()["id"]  # short and conflicting
        ids.append(
            browser.post(
                f"/admin/api/submissions/{submission_id}/category",
                json={"category": category},
                headers=admin_headers,
            ).get_json()["training_example_id"]
        )
    page = browser.get("/admin/training-data").get_data(as_text=True)
    link = f"/admin/training-data?ids={ids[0]},{ids[1]}"
    assert link in page
    filtered = browser.get(f"/admin/training-data?ids={ids[0]}").get_data(as_text=True)
    assert f'id="example-{ids[0]}"' in filtered and f'id="example-{ids[1]}"' not in filtered

    confirm = browser.get(f"/admin/training-data/{ids[0]}/delete")
    assert confirm.status_code == 200 and "Delete this example" in confirm.get_data(as_text=True)
    assert count(session, TrainingExample) == 2  # asking is not deleting
    deleted = browser.post(
        f"/admin/training-data/{ids[0]}/delete",
        data={"csrf_token": csrf_token_of(confirm.get_data(as_text=True))},
    )
    assert deleted.status_code == 302
    assert count(session, TrainingExample) == 1
