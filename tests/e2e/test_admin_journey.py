"""The admin's whole path in a real browser: correct submissions until the dashboard says
ready, start a fine-tuning run, watch it to completion, open its details.

A live web process, a real Celery worker running the real engine (packaged MiniLM),
PostgreSQL and Redis; real BANKING77 texts, four topics x five messages.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from sqlalchemy import select

from shared.models import Category, FineTuningRun, Submission, TrainingExample
from shared.settings_store import set_setting
from tests.banking_data import banking_examples
from tests.e2e.admin_login import log_in

TOPICS = 4
PER_TOPIC = 5
RUN_TIMEOUT_MS = 300_000


def add_uncorrected_submissions(session) -> dict[str, str]:
    """Submissions the model filed under the wrong topic; returns text → true topic."""
    examples = banking_examples(PER_TOPIC, categories=TOPICS)
    topics = sorted({label for _, label in examples})
    for topic in topics:
        session.add(Category(name=topic, description=topic))
    for position, (text, label) in enumerate(examples):
        wrong = topics[(topics.index(label) + 1 + position) % len(topics)]
        if wrong == label:
            wrong = topics[(topics.index(label) + 1) % len(topics)]
        session.add(
            Submission(
                message=text,
                contributor_type="resident",
                category=wrong,
                predicted_category=wrong,
                confidence=0.4,
                model_version="base:all-MiniLM-L6-v2",
            )
        )
    set_setting(session, "min_training_examples", len(examples))
    session.commit()
    return dict(examples)


def test_admin_corrects_trains_watches_progress_and_reads_the_run_details(
    live_server, celery_worker_process, config, page, admin_account, session
):
    for leftover in ("finetuned", "staging"):  # run ids restart with every test's tables
        shutil.rmtree(Path(config.models_dir) / leftover, ignore_errors=True)
    truth = add_uncorrected_submissions(session)
    log_in(page, live_server, *admin_account)

    page.goto(f"{live_server.url}/admin/training")
    assert "Not ready yet" in page.locator('[data-role="readiness"]').inner_text()
    assert page.get_by_role("button", name="Start fine-tuning…").is_disabled()

    page.goto(f"{live_server.url}/admin/submissions?per_page=50")
    rows = page.locator("tbody tr")
    assert rows.count() == len(truth)
    for index in range(rows.count()):
        row = rows.nth(index)
        row.locator("select[name=category]").select_option(
            truth[row.locator("td.message").inner_text()]
        )
        row.get_by_role("button", name="Save").click()
        row.locator(".status", has_text="saved").wait_for()

    page.goto(f"{live_server.url}/admin/training")
    assert "Ready to train" in page.locator('[data-role="readiness"]').inner_text()
    page.locator('[data-chart="distribution"]').wait_for()
    page.select_option("#method", "lora")
    page.select_option("#lora_r", "16")
    page.fill("#learning_rate", "0.0003")
    page.fill("#epochs", "2")
    page.get_by_role("button", name="Start fine-tuning…").click()
    confirm = page.locator('[data-role="confirm"]')
    assert "LoRA rank 16" in confirm.inner_text()
    first_estimate = confirm.locator('[data-role="confirm-estimate"]')
    first_estimate.filter(has_text="Expected duration: unknown").wait_for()
    assert "no completed lora run" in first_estimate.inner_text()
    confirm.get_by_role("button", name="Confirm and start").click()

    bar = page.locator('[data-role="progress-bar"]')
    bar.wait_for()
    seen = []
    deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        # Status first, then the bar: both come from one status response, so a final
        # status is never paired with the bar of the poll before it.
        status = page.locator('[data-role="progress-status"]').inner_text()
        seen.append(int(bar.get_attribute("aria-valuenow")))
        if status in ("completed", "failed", "cancelled"):
            break
        page.wait_for_timeout(250)
    outcome = page.locator('[data-role="progress-outcome"]').inner_text()
    assert status == "completed", outcome
    assert seen == sorted(seen), "the progress bar only moves forward"
    assert seen[-1] == 100
    assert len(set(seen)) >= 2, "the bar moved while the page stayed open"
    assert "accuracy" in outcome

    # The next run states its expected duration, scaled from the one that just finished.
    page.get_by_role("button", name="Start fine-tuning…").click()
    estimate = confirm.locator('[data-role="confirm-estimate"]').filter(has_text="scaled from run")
    estimate.wait_for()
    assert "Expected duration: about" in estimate.inner_text()
    confirm.get_by_role("button", name="Back").click()
    assert confirm.is_hidden()

    history_row = page.locator('[data-role="history"] tbody tr').first
    history_row.get_by_text("completed").wait_for()
    assert history_row.get_by_role("button", name="Deploy").is_visible()
    assert history_row.get_by_role("link", name="Export").is_visible()

    page.get_by_role("link", name="See the run details").click()
    page.wait_for_url(f"{live_server.url}/admin/training/runs/*")
    for chart in ("per-category-f1", "confusion-matrix", "loss-curve"):
        assert page.locator(f'[data-chart="{chart}"]').is_visible()
    assert page.locator('[data-chart="confusion-matrix"] tbody tr').count() == TOPICS
    assert "16" in page.locator('[data-role="config"]').inner_text()
    assert page.locator('[data-role="quality-report"]').is_visible()

    session.expire_all()
    run = session.scalars(select(FineTuningRun)).one()
    assert run.status == "completed"
    assert run.training_config["lora_r"] == 16
    examples = session.scalars(select(TrainingExample)).all()
    assert len(examples) == len(truth)
    assert all(
        example.used_in_training and example.training_run_id == run.id for example in examples
    )
