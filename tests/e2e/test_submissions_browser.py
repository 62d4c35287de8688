"""A person submits on the public form, and an admin corrects the category in place."""

from sqlalchemy import select

from shared.models import TrainingExample
from shared.seed import seed_default_categories
from tests.e2e.admin_login import log_in


def test_submit_then_correct_inline_without_reloading(live_server, page, admin_account, session):
    seed_default_categories(session)
    session.commit()
    page.goto(f"{live_server.url}/")
    page.get_by_label("Your message").fill("<b>There is a huge pothole</b> on Mill Street")
    page.get_by_label("I am writing as").select_option("visitor")
    page.click("button[type=submit]")
    assert "your message was received" in page.locator("#confirmation").inner_text()

    log_in(page, live_server, *admin_account, landing="/admin/submissions")
    row = page.locator("tbody tr").first
    assert row.locator("td.message").inner_text() == "<b>There is a huge pothole</b> on Mill Street"
    row.locator("select[name=category]").select_option("housing")
    url_before = page.url
    row.get_by_role("button", name="Save").click()
    row.locator(".status", has_text="saved (correction)").wait_for()
    assert page.url == url_before  # saved in place by admin.js
    session.expire_all()
    example = session.scalar(select(TrainingExample))
    assert example.corrected_category == "housing" and example.is_correction is True


def test_near_duplicates_fold_in_the_review_queue_and_one_save_covers_them(
    live_server, page, admin_account, session
):
    from shared.models import Submission

    seed_default_categories(session)
    texts = ["Damp in my flat again", "damp in my flat", "DAMP IN MY FLAT!", "the bus was late"]
    for text in texts:
        session.add(Submission(message=text, contributor_type="resident", category="other"))
    session.commit()

    log_in(page, live_server, *admin_account, landing="/admin/submissions")
    page.goto(f"{live_server.url}/admin/submissions?unreviewed=1&order=oldest")
    assert "2 near duplicates folded" in page.locator("#submissions-total").inner_text()
    row = page.locator("tbody tr").first
    row.get_by_text("+2 similar, not yet reviewed").click()
    copies = row.locator("details.similar li")
    assert copies.count() == 2
    row.locator("select[name=category]").select_option("housing")
    row.get_by_role("button", name="Save").click()

    row.locator("form .status", has_text="saved (correction) with 2 similar").wait_for()
    for index in range(2):
        assert copies.nth(index).locator(".status").inner_text() == "saved (correction)"
    session.expire_all()
    saved = session.scalars(select(TrainingExample)).all()
    assert sorted(example.message for example in saved) == sorted(texts[:3])
    assert {example.corrected_category for example in saved} == {"housing"}


class _FixedModel:
    """Stands in for the worker's model: every text is "roads and traffic"."""

    def classify(self, texts, categories):
        from shared.classifier.base import Prediction
        from shared.deployment.active_model import Classification

        scores = {category.name: 0.0 for category in categories} | {"roads and traffic": 1.0}
        return Classification(
            [Prediction("roads and traffic", 1.0, scores) for _ in texts], "base:e2e-worker"
        )


def test_submissions_a_worker_classifies_arrive_on_the_page_without_reloading(
    live_server, page, admin_account, session
):
    from shared.models import Submission
    from shared.submissions.classification_queue import classify_pending

    seed_default_categories(session)
    waiting = Submission(message="Potholes all along the ring road", contributor_type="resident")
    waiting.classification_pending = True
    session.add(waiting)
    session.commit()

    log_in(page, live_server, *admin_account, landing="/admin/submissions")
    row = page.locator(f"#submission-{waiting.id}")
    assert "classifying…" in row.inner_text()
    assert "1 submission waiting" in page.locator("#classification-queue").inner_text()
    url_before = page.url

    classify_pending(session, _FixedModel())  # what the worker does

    row.get_by_text("base:e2e-worker").wait_for()
    assert "roads and traffic" in row.inner_text()
    page.locator("#classification-queue").wait_for(state="hidden")
    assert page.url == url_before


def test_rows_still_classifying_that_a_filter_brings_in_fill_in_too(
    live_server, page, admin_account, session
):
    """Nothing waited when the page opened; a submission arrives, the admin's search
    brings it in (the rows are replaced, no reload), and its category arrives too."""
    from shared.models import Submission
    from shared.submissions.classification_queue import classify_pending

    seed_default_categories(session)
    session.add(Submission(message="Loud music every night", contributor_type="resident"))
    session.commit()
    log_in(page, live_server, *admin_account, landing="/admin/submissions")
    assert page.locator("#classification-queue").is_hidden()
    url_before = page.url

    waiting = Submission(message="Potholes all along the ring road", contributor_type="resident")
    waiting.classification_pending = True
    session.add(waiting)
    session.commit()
    page.fill("#filter-q", "potholes")  # the filters apply as they change
    row = page.locator(f"#submission-{waiting.id}")
    row.get_by_text("classifying…").wait_for()

    classify_pending(session, _FixedModel())  # what the worker does

    row.get_by_text("base:e2e-worker").wait_for()
    assert "roads and traffic" in row.inner_text()
    assert page.url.split("?")[0] == url_before.split("?")[0]
