"""The pages of issue 22 without JavaScript: search with highlights, page sizes, the bulk
forms, the quality report's actions, and the review page's shell (SQLite)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from shared.models import Submission, TrainingExample
from shared.seed import seed_default_categories
from tests.factories import make_submission, make_training_example


@pytest.fixture
def categories(session):
    seed_default_categories(session)
    session.commit()


def page_text(client, url, headers) -> str:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def test_searching_the_list_highlights_the_words(client, session, admin_headers, categories):
    make_submission(session, message="A pothole on <Mill> Street")
    make_submission(session, message="Loud music at night")
    session.commit()
    page = page_text(client, "/admin/submissions?q=mill", admin_headers)
    assert "1 submission</p>" in page
    assert "A pothole on &lt;<mark>Mill</mark>&gt; Street" in page
    assert "Loud music" not in page


def test_the_list_offers_page_sizes_and_keeps_the_choice_across_pages(
    client, session, admin_headers, categories
):
    for number in range(120):
        make_submission(session, message=f"message {number}")
    session.commit()
    page = page_text(client, "/admin/submissions?per_page=100", admin_headers)
    assert page.count('class="row-select"') == 100
    assert re.search(r'<option value="100" selected>100</option>', page)
    assert "per_page=100" in re.search(r'href="([^"]+)" rel="next"', page).group(1)


def test_the_bulk_form_sets_the_ticked_rows_without_javascript(
    client, session, admin_headers, categories
):
    ids = [make_submission(session, message=f"bins {n} not collected").id for n in range(3)]
    session.commit()
    response = client.post(
        "/admin/submissions/bulk-category",
        data={"category": "waste and recycling", "ids": [str(i) for i in ids[:2]]},
        headers=admin_headers,
    )
    assert response.status_code == 302
    page = page_text(client, "/admin/submissions", admin_headers)
    assert "2 submissions set to &#39;waste and recycling&#39;" in page
    examples = session.scalars(select(TrainingExample)).all()
    assert sorted(e.submission_id for e in examples) == ids[:2]


def test_the_bulk_form_can_cover_everything_matching_the_filter(
    client, session, admin_headers, categories
):
    make_submission(session, message="bins not collected on Mill Street")
    make_submission(session, message="bins overflowing")
    make_submission(session, message="Loud music at night")
    session.commit()
    client.post(
        "/admin/submissions/bulk-category",
        data={"category": "waste and recycling", "all_matching": "1", "filter_q": "bins"},
        headers=admin_headers,
    )
    session.expire_all()
    saved = session.scalars(select(TrainingExample.message).order_by(TrainingExample.message))
    assert list(saved) == ["bins not collected on Mill Street", "bins overflowing"]


def test_a_bulk_form_with_an_unknown_id_saves_nothing_and_says_so(
    client, session, admin_headers, categories
):
    known = make_submission(session).id
    session.commit()
    client.post(
        "/admin/submissions/bulk-category",
        data={"category": "housing", "ids": [str(known), "99999"]},
        headers=admin_headers,
    )
    page = page_text(client, "/admin/submissions", admin_headers)
    assert "no submission with id 99999: nothing was saved" in page
    assert session.scalars(select(TrainingExample)).all() == []


def test_training_data_is_relabelled_and_deleted_in_bulk(
    client, session, admin_headers, categories
):
    submission = make_submission(session, message="the bus was late", category="other")
    first = make_training_example(session, message="the bus was late", submission_id=submission.id)
    second = make_training_example(session, message="the tram was late")
    third = make_training_example(session, message="the train was late")
    session.commit()
    page = page_text(client, "/admin/training-data?q=bus", admin_headers)
    assert "the <mark>bus</mark> was late" in page
    assert f'href="/admin/submissions?ids={submission.id}"' in page  # back to its submission

    client.post(
        "/admin/training-data/bulk",
        data={"action": "relabel", "category": "public transport", "ids": [first.id, second.id]},
        headers=admin_headers,
    )
    client.post(
        "/admin/training-data/bulk",
        data={"action": "delete", "ids": [third.id]},
        headers=admin_headers,
    )
    session.expire_all()
    left = session.scalars(select(TrainingExample).order_by(TrainingExample.id)).all()
    assert [(e.id, e.corrected_category) for e in left] == [
        (first.id, "public transport"),
        (second.id, "public transport"),
    ]
    assert session.get(Submission, submission.id).category == "public transport"
    linked = page_text(client, f"/admin/submissions?ids={submission.id}", admin_headers)
    assert "1 submission</p>" in linked and "the bus was late" in linked


def test_the_quality_report_deletes_duplicates_and_relabels_conflicts(
    client, session, admin_headers, categories
):
    for _ in range(3):
        make_training_example(
            session, message="Bins were not collected", corrected_category="other"
        )
    conflicting = [
        make_training_example(session, message="Noisy bins at night", corrected_category=name).id
        for name in ("other", "noise and nuisance", "other")
    ]
    session.commit()
    page = page_text(client, "/admin/training-data", admin_headers)
    assert "Delete the 2 duplicates" in page
    assert "relabel these 3 conflicting copies as" in page

    form = re.search(r'<form[^>]*>(?:(?!</form>).)*id="delete-duplicates"', page, re.S).group(0)
    duplicate_ids = re.findall(r'name="ids" value="(\d+)"', form)
    client.post(
        "/admin/training-data/bulk",
        data={"action": "delete", "ids": duplicate_ids},
        headers=admin_headers,
    )
    client.post(
        "/admin/training-data/bulk",
        data={"action": "relabel", "category": "noise and nuisance", "ids": conflicting},
        headers=admin_headers,
    )
    session.expire_all()
    rows = session.execute(select(TrainingExample.message, TrainingExample.corrected_category))
    assert sorted(rows) == [
        ("Bins were not collected", "other"),
        *[("Noisy bins at night", "noise and nuisance")] * 3,
    ]
    after = page_text(client, "/admin/training-data", admin_headers)
    assert "conflicting copies" not in after
    # The relabelled copies now agree: they are plain duplicates, deletable but one.
    form = re.search(r'<form[^>]*>(?:(?!</form>).)*id="delete-duplicates"', after, re.S).group(0)
    assert re.findall(r'name="ids" value="(\d+)"', form) == [str(i) for i in conflicting[1:]]


def test_the_review_page_is_a_shell_for_its_static_script(client, admin_headers, categories):
    page = page_text(client, "/admin/review", admin_headers)
    assert '<script src="/static/review.js" defer></script>' in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # no inline script (CSP)
    assert "The review mode needs JavaScript" in page  # the <noscript> pointer to the list
    assert 'data-query=\'{"fold_similar": "1", "order": "uncertain", "unreviewed": "1"}\'' in page
    numbered = re.findall(r"<kbd>(\d)</kbd>\s*<span class=\"name\">([^<]+)</span>", page)
    assert numbered[0] == ("1", "housing") and len(numbered) == 8  # by name


def test_the_review_page_keeps_the_lists_filters(client, admin_headers, categories):
    page = page_text(
        client,
        "/admin/review?category=housing&q=damp&order=oldest&include_reviewed=1",
        admin_headers,
    )
    query = re.search(r"data-query='([^']+)'", page).group(1)
    assert query == '{"category": "housing", "order": "oldest", "q": "damp"}'
    listing = page_text(client, "/admin/submissions?category=housing&q=damp", admin_headers)
    assert 'href="/admin/review?category=housing&amp;q=damp"' in listing
