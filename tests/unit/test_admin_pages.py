"""Admin pages render with filters and pagination (SQLite; bearer token instead of a login)."""

import re

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


def test_the_review_queue_page_folds_near_duplicates_and_saves_the_ticked_ones(
    client, session, admin_headers
):
    seed_default_categories(session)
    first = make_submission(session, message="Damp in my flat again", category="housing")
    copies = [
        make_submission(session, message=text, category="housing")
        for text in ("damp in my flat", "DAMP IN MY FLAT!")
    ]
    make_submission(session, message="the bus was late", category="public transport")
    session.commit()
    queue = "/admin/submissions?unreviewed=1&order=oldest"

    page = client.get(queue, headers=admin_headers).get_data(as_text=True)

    assert "2 submissions, and 2 near duplicates folded under them" in page
    assert "+2 similar, not yet reviewed" in page
    for copy in copies:
        checkbox = (
            rf'name="similar_ids" value="{copy.id}"\s+form="category-form-{first.id}" checked'
        )
        assert re.search(checkbox, page)
    shown = client.get(queue + "&similar=show", headers=admin_headers).get_data(as_text=True)
    assert "4 submissions</p>" in shown and "similar, not yet reviewed" not in shown

    # The admin unticks one copy: the decision covers the row and the ticked copy.
    response = client.post(
        f"/admin/submissions/{first.id}/category",
        data={"category": "other", "similar_ids": [str(copies[0].id)], "next": queue},
        headers=admin_headers,
    )
    assert response.status_code == 302
    after = client.get(queue, headers=admin_headers).get_data(as_text=True)
    assert (
        f"Submission #{first.id} and 1 similar submission are now &#39;other&#39; "
        "(saved for training: 2 corrections, 0 confirmations)." in after
    )
    assert "2 submissions</p>" in after  # the unticked copy and the bus are left
    assert "DAMP IN MY FLAT!" in after and "Damp in my flat again" not in after
