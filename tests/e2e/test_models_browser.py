"""An admin deploys a model, rolls back and imports an archive from the models page.

The Models panel must name the deployed run at once (it used to say "Base model" until
the web process had swapped), and the run page must read at a glance. The screenshots
docs/screenshots/models-panel.png and run-page.png are taken here (``make screenshots``
refreshes them; ``make test`` writes them to a temporary folder).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import select

from shared.models import Category, DeploymentEvent, FineTuningRun, TrainingExample
from shared.settings_store import get_setting
from tests.e2e.admin_login import log_in
from tests.model_files import archive_files, write_adapter_directory, zip_bytes

LABELS = ["cards", "loans"]
SCREENSHOTS = Path(
    os.environ.get("SORTLOOP_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="sortloop-shots-")
)


def test_deploy_rollback_and_import_from_the_models_page(
    live_server, page, admin_account, session, tmp_path
) -> None:
    for name in LABELS:
        session.add(Category(name=name, description=f"questions about {name}"))
    run = FineTuningRun(
        status="completed", base_model="all-MiniLM-L6-v2", results={"meets_criteria": True}
    )
    session.add(run)
    session.flush()
    run.model_path = str(write_adapter_directory(tmp_path / "published", LABELS))
    session.commit()
    archive = tmp_path / "exported <model>.zip"
    archive.write_bytes(zip_bytes(archive_files(LABELS, seed=4)))

    log_in(page, live_server, *admin_account)
    page.goto(f"{live_server.url}/admin/models")
    page.locator('[data-role="active-model"]', has_text="Base model:").wait_for()
    rollback = page.get_by_role("button", name="Roll back to the base model")
    row = page.locator('[data-role="models"] tbody tr', has_text=f"run {run.id}")
    row.wait_for()
    assert rollback.is_disabled()  # the base model is in use: nothing to roll back
    row.get_by_role("button", name="Deploy").click()
    page.locator('[data-role="panel-status"]', has_text=f"Deployed run {run.id}").wait_for()
    page.locator(
        '[data-role="active-model"]', has_text=f"Fine-tuned model: run {run.id}"
    ).wait_for()
    page.locator('[data-role="history"] tbody tr', has_text=f"Deployed run {run.id}").wait_for()

    page.once("dialog", lambda dialog: dialog.accept())
    rollback.click()
    page.locator('[data-role="panel-status"]', has_text="Rolled back").wait_for()

    page.set_input_files("#import-archive", str(archive))
    page.get_by_role("button", name="Import").click()
    page.locator('[data-role="import-status"]', has_text="Imported as run").wait_for()
    page.locator(
        '[data-role="models"] tbody tr', has_text="imported from exported <model>.zip"
    ).wait_for()

    session.expire_all()
    assert get_setting(session, "active_model_id") is None
    actions = session.scalars(select(DeploymentEvent.action).order_by(DeploymentEvent.id)).all()
    assert actions == ["deploy", "rollback", "import"]


LONG = "a card payment that was declined at a shop abroad, and the fee it cost"
RESULTS = {
    "accuracy": 0.9,
    "baseline_accuracy": 0.775,
    "macro_f1": 0.89,
    "meets_criteria": False,
    "verdict": {"meets_criteria": False, "reasons": ["accuracy up 12.5 points; 15 needed"]},
    "labels": ["cards", "loans", LONG],
    "per_category_f1": {"cards": 0.93, "loans": 0.9, LONG: 0.84},
    "baseline_per_category_f1": {"cards": 0.8, "loans": 0.78, LONG: 0.74},
    "confusion_matrix": [[13, 1, 1], [1, 14, 0], [2, 0, 8]],
    "baseline_confusion_matrix": [[11, 2, 2], [2, 12, 1], [3, 1, 6]],
    "loss_curve": [
        {"step": step, "loss": round(1.9 / (1 + 0.12 * step), 3)} for step in range(1, 61)
    ],
    "training": {
        "train_loss": [1.2, 0.62, 0.41, 0.33],
        "val_loss": [1.05, 0.71, 0.58, 0.6],
        "epochs_run": 4,
        "best_epoch": 3,
        "method": "lora",
    },
}


def test_the_models_panel_names_the_deployed_run_at_once(
    live_server, page, admin_account, session, tmp_path
) -> None:
    """A run below the deploy criteria: the dialog asks in words, the admin deploys it
    anyway, and the panel names it straight away, before the web process has swapped."""
    for name in ["cards", "loans", LONG]:
        session.add(Category(name=name, description=f"questions about {name}"))
    doubted = TrainingExample(
        message="my loan repayment bounced off my card",
        contributor_type="resident",
        corrected_category="loans",
    )
    session.add(doubted)
    session.flush()
    issue = {
        "id": doubted.id,
        "text": doubted.message,
        "label": "loans",
        "suggested": "cards",
        "label_probability": 0.031,
        "suggested_probability": 0.882,
    }
    run = FineTuningRun(
        status="completed",
        base_model="/opt/models/sentence-transformers/all-MiniLM-L6-v2",
        results={**RESULTS, "training": {**RESULTS["training"], "label_issues": [issue]}},
        num_training_examples=120,
        num_validation_examples=25,
        num_test_examples=40,
        training_config={"method": "lora", "epochs": 4},
    )
    session.add(run)
    session.flush()
    run.model_path = str(write_adapter_directory(tmp_path / "published", ["cards", "loans", LONG]))
    session.commit()

    log_in(page, live_server, *admin_account)
    page.goto(f"{live_server.url}/admin/models")
    row = page.locator('[data-role="models"] tbody tr', has_text=f"run {run.id}")
    row.get_by_role("button", name="Deploy").click()
    dialog = page.locator('[data-role="deploy-dialog"]')
    dialog.wait_for()
    assert "force" not in dialog.inner_text()
    assert f"Deploy run {run.id} anyway?" in dialog.inner_text()
    dialog.get_by_role("button", name="Deploy anyway").click()

    active = page.locator('[data-role="active-model"]')
    active.filter(has_text=f"Fine-tuned model: run {run.id}").wait_for()
    assert "Base model" not in active.inner_text()
    assert "90.0% test accuracy (+12.5 points over the base model)" in active.inner_text()
    assert "put in use by e2e-admin" in active.inner_text()
    history = page.locator('[data-role="history"] tbody tr').first
    assert f"Deployed run {run.id}, replacing the base model" in history.inner_text()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", history.inner_text())
    assert "{" not in page.locator('[data-role="history"]').inner_text()
    # A reload says the same (the page is rendered by the server).
    page.reload()
    active.filter(has_text=f"Fine-tuned model: run {run.id}").wait_for()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("[data-model-panel]").screenshot(path=str(SCREENSHOTS / "models-panel.png"))

    page.goto(f"{live_server.url}/admin/training/runs/{run.id}")
    assert page.locator('[data-role="base-model"]').inner_text() == "all-MiniLM-L6-v2"
    assert page.locator('[data-chart="baseline-confusion-matrix"]').is_visible()
    assert page.locator('[data-chart="loss-curve"] polyline').count() == 2
    label = page.locator('[data-chart="per-category-f1"] text.bar-label', has_text=LONG)
    assert label.bounding_box()["width"] < 680  # the whole name fits the chart
    page.screenshot(path=str(SCREENSHOTS / "run-page.png"), full_page=True)
    # The label the model doubts, and the way to it: Training data, that example alone.
    doubts = page.locator('[data-role="label-issue"]')
    assert doubts.count() == 1
    assert "cards (88%)" in doubts.inner_text() and "loans (3.1%)" in doubts.inner_text()
    page.locator('[data-role="label-issues-open"]').click()
    page.wait_for_url(re.compile(r"/admin/training-data\?ids="))
    page.get_by_text("my loan repayment bounced off my card").wait_for()
    page.get_by_role("button", name="Relabel as cards").click()
    page.get_by_text("1 training example now 'cards'.").wait_for()
    assert page.get_by_role("button", name="Relabel as cards").count() == 0

    session.expire_all()
    assert session.get(FineTuningRun, run.id).is_active_model


def test_shadow_a_model_review_three_submissions_see_the_report_change_and_promote(
    live_server, page, admin_account, session, config, tmp_path
) -> None:
    for name in LABELS:
        session.add(Category(name=name, description=f"questions about {name}"))
    run = FineTuningRun(
        status="completed", base_model="all-MiniLM-L6-v2", results={"meets_criteria": True}
    )
    session.add(run)
    session.flush()
    run.model_path = str(write_adapter_directory(tmp_path / "shadowed", LABELS))
    session.commit()
    page.on("dialog", lambda dialog: dialog.accept())
    token = {"Authorization": f"Bearer {config.admin_token}"}

    log_in(page, live_server, *admin_account)
    page.goto(f"{live_server.url}/admin/models")
    row = page.locator('[data-role="models"] tbody tr', has_text=f"run {run.id}")
    row.get_by_role("button", name="Put in shadow").click()
    page.locator(
        '[data-role="shadow"]', has_text=f"Run {run.id} (run-{run.id}) is in shadow"
    ).wait_for()
    assert row.get_by_role("button", name="Put in shadow").is_disabled()  # one at a time

    deadline = time.monotonic() + 60
    while not (requests.get(f"{live_server.url}/admin/api/model-info", headers=token).json()
               .get("shadow") or {}).get("loaded"):  # fmt: skip
        assert time.monotonic() < deadline, "the web process did not load the shadow"
        time.sleep(0.2)  # poll: the process's background check loads it at its own pace
    for message in ("my cards are late", "a question about loans", "hello there"):
        answer = requests.post(
            f"{live_server.url}/api/submissions",
            json={"message": message, "contributor_type": "resident"},
        )
        assert answer.status_code == 201
    page.reload()
    figure = page.locator('[data-figure="Reviewed by admins since"]')
    assert figure.inner_text() == "0"
    assert page.locator('[data-figure="Texts scored"]').inner_text() == "3"

    page.goto(f"{live_server.url}/admin/submissions")
    for index in range(3):
        submission = page.locator("tbody tr").nth(index)
        submission.locator("select[name=category]").select_option("cards")
        submission.get_by_role("button", name="Save").click()
        submission.locator(".status", has_text="saved").wait_for()
    page.goto(f"{live_server.url}/admin/models")
    page.locator('[data-figure="Reviewed by admins since"]', has_text="3").wait_for()
    assert page.locator('[data-figure="McNemar exact p"]').inner_text() != "—"

    page.get_by_role("button", name="Promote (deploy it)").click()
    page.locator('[data-role="panel-status"]', has_text=f"Deployed run {run.id}").wait_for()
    page.locator('[data-role="shadow"]', has_text="No model is in shadow").wait_for()
    session.expire_all()
    events = session.execute(
        select(DeploymentEvent.action, DeploymentEvent.detail).order_by(DeploymentEvent.id)
    ).all()
    assert [tuple(event) for event in events][-2:] == [
        ("deploy", None),
        ("shadow", "shadow promoted"),
    ]
    rolled_back = requests.post(f"{live_server.url}/admin/api/rollback-model", headers=token)
    assert rolled_back.status_code == 200  # the next test starts on the base model


def test_an_admin_compares_two_runs_and_sees_the_result_from_the_worker(
    live_server, page, admin_account, session, tmp_path, celery_worker_process
) -> None:
    for name in LABELS:
        session.add(Category(name=name, description=f"questions about {name}"))
    texts = [("my card was declined", "cards"), ("how much can I borrow", "loans")]
    ids = []
    for text, label in texts:
        example = TrainingExample(
            message=text, corrected_category=label, contributor_type="resident"
        )
        session.add(example)
        session.flush()
        ids.append(example.id)
    runs = []
    for seed in (1, 2):
        run = FineTuningRun(
            status="completed",
            base_model="all-MiniLM-L6-v2",
            results={"meets_criteria": True},
            data_snapshot={"split": {"train": [], "val": [], "test": ids}},
        )
        session.add(run)
        session.flush()
        run.model_path = str(write_adapter_directory(tmp_path / f"run{seed}", LABELS, seed=seed))
        runs.append(run)
    session.commit()

    log_in(page, live_server, *admin_account)
    page.goto(f"{live_server.url}/admin/models")
    page.locator('[data-role="compare-b"] option', has_text=f"Run {runs[1].id}").wait_for(
        state="attached"
    )
    page.select_option('[data-role="compare-a"]', str(runs[0].id))
    page.select_option('[data-role="compare-b"]', str(runs[1].id))
    page.get_by_role("button", name="Compare", exact=True).click()

    summary = page.locator('[data-role="comparison-summary"]')
    summary.wait_for(timeout=120_000)
    assert f"run {runs[0].id}" in summary.inner_text()
    assert "held-out examples" in summary.inner_text()
    rows = page.locator('[data-role="comparison-table"] tr')
    assert rows.count() == 1 + len(LABELS)
    assert rows.first.inner_text().split("\t")[1:] == [
        f"F1 run {runs[0].id}",
        f"F1 run {runs[1].id}",
    ]
