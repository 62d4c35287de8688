"""Admin pages render with filters and pagination (SQLite; bearer token instead of a login)."""

from shared.seed import seed_default_categories
from tests.factories import make_submission, make_training_example


def test_submissions_page_paginates_and_keeps_the_filters(client, session, admin_headers):
    seed_default_categories(session)
    for i in range(30):
        make_submission(session, message=f"message {i}", category="housing", confidence=i / 30)
    session.commit()
    page = client.get(
        "/admin/submissions?category=housing&order=uncertain", headers=admin_headers
    ).get_data(as_text=True)
    assert "30 submissions" in page
    assert "Page 1 of 2" in page
    assert "page=2" in page and "order=uncertain" in page and "category=housing" in page
    # least confident first: message 0 has confidence 0
    assert page.index("message 0<") < page.index("message 1<")


def test_training_data_page_filters_by_kind(client, session, admin_headers):
    make_training_example(session, message="a correction text here", is_correction=True)
    make_training_example(session, message="a confirmation text here", is_correction=False)
    session.commit()
    page = client.get("/admin/training-data?is_correction=true", headers=admin_headers)
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "a correction text here" in text and "a confirmation text here" not in text


def test_a_bad_page_number_is_a_400_page(client, admin_headers):
    assert client.get("/admin/submissions?page=zero", headers=admin_headers).status_code == 400
