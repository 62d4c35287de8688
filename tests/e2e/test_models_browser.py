"""An admin deploys a model, rolls back and imports an archive from the models page."""

from __future__ import annotations

import time

import requests
from sqlalchemy import select

from shared.models import Category, DeploymentEvent, FineTuningRun, TrainingExample
from shared.settings_store import get_setting
from tests.model_files import archive_files, write_adapter_directory, zip_bytes

LABELS = ["cards", "loans"]


def log_in(page, live_server, username, password):
    page.goto(f"{live_server.url}/admin/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/**")


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
    page.locator('[data-role="active-model"]', has_text="Base model").wait_for()
    rollback = page.get_by_role("button", name="Roll back to the base model")
    row = page.locator('[data-role="models"] tbody tr', has_text=f"run {run.id}")
    row.wait_for()
    assert rollback.is_disabled()  # the base model is in use: nothing to roll back
    row.get_by_role("button", name="Deploy").click()
    page.locator('[data-role="panel-status"]', has_text=f"Deployed run-{run.id}").wait_for()
    page.locator('[data-role="history"] tbody tr', has_text="deploy").first.wait_for()

    page.once("dialog", lambda dialog: dialog.accept())
    rollback.click()
    page.locator('[data-role="panel-status"]', has_text="Rolled back").wait_for()

    page.set_input_files("#import-archive", str(archive))
    page.get_by_role("button", name="Import").click()
    page.locator('[data-role="import-status"]', has_text="Imported as run").wait_for()
    page.locator('[data-role="models"] tbody tr', has_text="imported").wait_for()

    session.expire_all()
    assert get_setting(session, "active_model_id") is None
    actions = session.scalars(select(DeploymentEvent.action).order_by(DeploymentEvent.id)).all()
    assert actions == ["deploy", "rollback", "import"]


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
    page.locator('[data-role="panel-status"]', has_text=f"Deployed run-{run.id}").wait_for()
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
