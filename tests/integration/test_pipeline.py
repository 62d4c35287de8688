"""The training pipeline end to end: the real API, PostgreSQL, Redis and Celery worker
processes running the real engine on the packaged MiniLM with a few BANKING77 texts.

These tests use a broker of their own (not the session worker's), so the only worker
consuming the training queue is the one started here, which a test may kill.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import func, select

from shared import task_names
from shared.models import ACTIVE_STATUSES, Category, FineTuningRun, TrainingExample
from shared.settings_store import get_setting, set_setting
from shared.training.runs import pipeline_sender
from tests.banking_data import banking_examples
from tests.integration.conftest import WorkerProcess, claimed_redis_database
from tests.webhook_receiver import Receiver, signature_is_valid

ORDER = ["queued", "preparing", "training", "evaluating", "completed"]
TERMINAL = {"completed", "failed", "cancelled"}
RUN_TIMEOUT = 300.0  # seconds a whole run may take on a busy two-core machine
HEARTBEAT_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pipeline_config(config, tmp_path_factory):
    with claimed_redis_database() as broker_url:
        yield config.with_overrides(
            broker_url=broker_url,
            result_backend=broker_url,
            models_dir=str(tmp_path_factory.mktemp("pipeline-models")),
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT,
            beat_interval_seconds=2.0,
            training_device="cpu",
            training_gradient_accumulation=2,  # the worker host's settings reach the engine
        )


@pytest.fixture(autouse=True)
def _empty_models_dir(pipeline_config):
    """Run ids restart with every test's empty tables: so do the published models."""
    for directory in Path(pipeline_config.models_dir).iterdir():
        shutil.rmtree(directory)


class Workers:
    """The module's worker (with beat, so the reaper and auto-train run for real); a test
    may kill it and start a replacement."""

    def __init__(self, config, directory: Path) -> None:
        self.config = config
        self.directory = directory
        self.count = 0
        self.current: WorkerProcess | None = None

    def start(self) -> WorkerProcess:
        self.count += 1
        worker = WorkerProcess(self.config, self.directory / f"worker-{self.count}.log")
        worker.start(beat=True)
        worker.wait_ready()
        self.current = worker
        return worker

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()


@pytest.fixture(scope="module")
def workers(pipeline_config, tmp_path_factory):
    workers = Workers(pipeline_config, tmp_path_factory.mktemp("pipeline-workers"))
    workers.start()
    yield workers
    workers.stop()


@pytest.fixture
def api(pipeline_config, engine, workers):
    """A test client of a web app that enqueues on the module's broker."""
    from web import create_app

    app = create_app(pipeline_config)
    app.config.update(TESTING=True)
    return app


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": "Bearer integration-token"}


def add_banking_examples(session, per_category: int) -> None:
    for label in sorted({label for _, label in banking_examples(1)}):
        session.add(Category(name=label, description=label))
    for text, label in banking_examples(per_category):
        session.add(
            TrainingExample(
                message=text,
                corrected_category=label,
                original_category=label,
                contributor_type="resident",
                is_correction=False,
            )
        )
    set_setting(session, "min_training_examples", 8 * per_category)
    session.commit()


@pytest.fixture
def small_data(session):
    """8 categories x 6 examples: a run takes seconds."""
    add_banking_examples(session, 6)


@pytest.fixture
def larger_data(session):
    """8 categories x 30 examples: training lasts long enough to cancel or kill it."""
    add_banking_examples(session, 30)


def start(client, headers, **options):
    return client.post("/admin/api/start-training", json=options, headers=headers)


def status_of(client, headers, run_id: int) -> dict:
    response = client.get(f"/admin/api/training-status/{run_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def watch(client, headers, run_id: int, until, workers: Workers | None = None) -> list[dict]:
    """Poll the status API until ``until(status)``; return every status seen."""
    seen = []
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        status = status_of(client, headers, run_id)
        seen.append(status)
        if until(status):
            return seen
        time.sleep(0.2)
    log = workers.current.log_text() if workers and workers.current else ""
    pytest.fail(f"run {run_id} never reached the expected state; last: {seen[-1]}\n{log}")


def finished(status: dict) -> bool:
    return status["status"] in TERMINAL


def training_has_begun(status: dict) -> bool:
    return status["status"] == "training" and status["epoch"] is not None or finished(status)


def is_in_order(statuses: list[str]) -> bool:
    positions = [ORDER.index(status) for status in statuses]
    return positions == sorted(positions)


def wait_until_no_run_is_active(session) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        session.expire_all()
        active = session.scalar(
            select(func.count())
            .select_from(FineTuningRun)
            .where(FineTuningRun.status.in_(ACTIVE_STATUSES))
        )
        if not active:
            return
        time.sleep(0.2)
    pytest.fail("a run stayed active")


def test_a_run_goes_from_queued_to_completed_with_rising_progress_and_results(
    api, admin_headers, small_data, session, pipeline_config, workers
):
    client = api.test_client()
    receiver = Receiver().start()  # a webhook receiver hears that the run completed
    hook = client.post(
        "/admin/api/webhooks",
        json={"url": receiver.url, "events": ["run.completed", "run.failed"], "secret": "s" * 20},
        headers=admin_headers,
    )
    assert hook.status_code == 201
    response = start(client, admin_headers, epochs=2, lora_r=8, learning_rate=2e-4)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued"
    run_id = body["run_id"]

    seen = watch(client, admin_headers, run_id, finished, workers)

    final = seen[-1]
    assert final["status"] == "completed", final["error"]
    statuses = [status["status"] for status in seen]
    assert is_in_order(list(dict.fromkeys(statuses)))
    progress = [status["progress"] for status in seen]
    assert progress == sorted(progress)
    assert final["progress"] == 1.0
    assert [step["status"] for step in final["timeline"]] == ORDER
    results = final["results"]
    assert 0.0 <= results["accuracy"] <= 1.0
    assert 0.0 <= results["baseline_accuracy"] <= 1.0
    assert set(results["per_category_f1"]) == {label for _, label in banking_examples(1)}
    assert len(results["confusion_matrix"]) == 8
    assert results["loss_curve"], "the loss curve is recorded"
    assert final["error"] is None
    published = Path(pipeline_config.models_dir, "finetuned", f"run_{run_id}")
    assert (published / "adapter_config.json").is_file()
    recorded = json.loads((published / "training_data.json").read_text())["config"]
    assert (recorded["device"], recorded["gradient_accumulation_steps"]) == ("cpu", 2)
    assert recorded["epochs"] == 2 and recorded["lora_r"] == 8  # and the admin's choices

    (row,) = client.get("/admin/api/runs", headers=admin_headers).get_json()
    assert row["run_id"] == run_id
    assert row["status"] == "completed"
    assert row["accuracy"] == results["accuracy"]
    assert row["baseline_accuracy"] == results["baseline_accuracy"]

    session.expire_all()
    examples = session.scalars(select(TrainingExample)).all()
    assert all(example.used_in_training for example in examples)
    assert {example.training_run_id for example in examples} == {run_id}

    deadline = time.monotonic() + RUN_TIMEOUT
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.2)  # polling with a deadline: the delivery task runs after the run
    receiver.stop()
    (delivery,) = receiver.received
    assert signature_is_valid(
        delivery["body"], delivery["headers"]["X-Sortloop-Signature"], "s" * 20
    )
    (event,) = receiver.events()
    assert event["type"] == "run.completed"
    assert event["run"]["id"] == run_id and event["run"]["accuracy"] == results["accuracy"]

    # The run keeps what its tasks logged, stage by stage, and how it ended.
    log = client.get(f"/admin/api/runs/{run_id}/log", headers=admin_headers).get_json()
    messages = [line["message"] for line in log["lines"]]
    for start_of_line in ("data validated", "epoch=1 ", "trained method=", "evaluated test=",
                          "model published", "run completed"):  # fmt: skip
        assert any(message.startswith(start_of_line) for message in messages), start_of_line


def test_a_failed_runs_page_shows_its_traceback(
    api, admin_headers, small_data, session, pipeline_config, workers
):
    """A run whose base model cannot be loaded fails in train; its page and its log
    download show the Python traceback the worker logged."""
    categories = [
        {"name": c.name, "description": c.description} for c in session.scalars(select(Category))
    ]
    run = FineTuningRun(
        status="queued",
        base_model="/nonexistent/base-model",
        label_set=[c["name"] for c in categories],
        training_config={"method": "lora", "epochs": 1},
        data_snapshot={
            "example_ids": list(session.scalars(select(TrainingExample.id))),
            "categories": categories,
        },
    )
    session.add(run)
    session.commit()
    client = api.test_client()
    pipeline_sender(Celery(broker=pipeline_config.broker_url))(run.id)

    final = watch(client, admin_headers, run.id, finished, workers)[-1]

    assert final["status"] == "failed"
    page = client.get(f"/admin/training/runs/{run.id}", headers=admin_headers)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Traceback (most recent call last)" in html
    assert "/nonexistent/base-model" in html
    download = client.get(f"/admin/training/runs/{run.id}/log.txt", headers=admin_headers)
    assert download.mimetype == "text/plain"
    text = download.get_data(as_text=True)
    assert "INFO worker.fine_tuning.data_validator: data validated" in text
    assert "Traceback (most recent call last)" in text
    assert "ERROR shared.training.lifecycle: run failed: train failed: " in text


def test_a_second_start_while_a_run_is_active_is_refused(api, admin_headers, small_data, session):
    client = api.test_client()
    first = start(client, admin_headers, epochs=1)
    assert first.status_code == 202

    second = start(client, admin_headers, epochs=1)

    assert second.status_code == 409
    assert "already active" in second.get_json()["error"]
    assert session.scalar(select(func.count()).select_from(FineTuningRun)) == 1
    client.post(f"/admin/api/cancel-training/{first.get_json()['run_id']}", headers=admin_headers)
    wait_until_no_run_is_active(session)


def test_cancel_during_training_ends_the_run_cancelled(
    api, admin_headers, larger_data, session, pipeline_config, workers
):
    client = api.test_client()
    run_id = start(client, admin_headers, epochs=10).get_json()["run_id"]
    seen = watch(client, admin_headers, run_id, training_has_begun, workers)
    assert seen[-1]["status"] == "training", "training finished before the test could cancel it"

    response = client.post(f"/admin/api/cancel-training/{run_id}", headers=admin_headers)

    assert response.status_code == 200
    final = watch(client, admin_headers, run_id, finished, workers)[-1]
    assert final["status"] == "cancelled"
    assert final["error"] is None
    assert not Path(pipeline_config.models_dir, "finetuned", f"run_{run_id}").exists()
    session.expire_all()
    assert not any(example.used_in_training for example in session.scalars(select(TrainingExample)))


def test_a_worker_killed_mid_training_fails_the_run_and_the_next_run_succeeds(
    api, admin_headers, larger_data, session, workers
):
    client = api.test_client()
    run_id = start(client, admin_headers, epochs=10).get_json()["run_id"]
    seen = watch(client, admin_headers, run_id, training_has_begun, workers)
    assert seen[-1]["status"] == "training", "training finished before the test could kill it"

    workers.current.kill()  # SIGKILL to the whole process group, pool child included
    workers.start()  # a fresh worker with beat: its reaper finds the stale heartbeat

    final = watch(client, admin_headers, run_id, finished, workers)[-1]
    assert final["status"] in ("failed", "completed")
    if final["status"] == "failed":
        assert final["error"].startswith("worker lost")

    next_run = start(client, admin_headers, epochs=1)
    assert next_run.status_code == 202
    after = watch(client, admin_headers, next_run.get_json()["run_id"], finished, workers)[-1]
    assert after["status"] == "completed", after["error"]


def test_a_dead_broker_gives_503_and_leaves_no_active_run(
    pipeline_config, engine, admin_headers, small_data, session
):
    from web import create_app

    dead = "redis://127.0.0.1:1/0"
    app = create_app(pipeline_config.with_overrides(broker_url=dead, result_backend=dead))

    response = app.test_client().post("/admin/api/start-training", json={}, headers=admin_headers)

    assert response.status_code == 503
    assert "error" in response.get_json()
    session.expire_all()
    run = session.scalars(select(FineTuningRun)).one()
    assert run.status == "failed"
    assert "broker unreachable" in run.error


def wait_for_a_run(session) -> FineTuningRun:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        session.expire_all()
        run = session.scalars(select(FineTuningRun)).first()
        if run is not None:
            return run
        time.sleep(0.1)  # poll: beat's auto-train check runs on its own clock (bounded)
    pytest.fail("auto-train started no run")


def test_auto_train_starts_exactly_one_run(
    api, admin_headers, small_data, session, pipeline_config, workers
):
    set_setting(session, "auto_train", True)
    session.commit()
    client = Celery(broker=pipeline_config.broker_url, backend=pipeline_config.result_backend)

    # Beat ticks auto-train every two seconds too; three more ticks at once.
    ticks = [
        client.send_task(task_names.AUTO_TRAIN, queue=task_names.DEFAULT_QUEUE) for _ in range(3)
    ]
    run = wait_for_a_run(session)
    # The default config trains for up to 10 epochs: stop the run at once.
    api.test_client().post(f"/admin/api/cancel-training/{run.id}", headers=admin_headers)
    started = [tick.get(timeout=RUN_TIMEOUT) for tick in ticks]
    wait_until_no_run_is_active(session)
    # No new examples since that run: another tick starts nothing.
    later = client.send_task(task_names.AUTO_TRAIN, queue=task_names.DEFAULT_QUEUE)

    assert later.get(timeout=RUN_TIMEOUT) is None
    session.expire_all()
    runs = session.scalars(select(FineTuningRun)).all()
    assert [one.id for one in runs] == [run.id]
    assert run.created_by == "auto-train"
    assert [run_id for run_id in started if run_id is not None] in ([], [run.id])


def test_twenty_simultaneous_starts_make_exactly_one_run(api, admin_headers, small_data, session):
    barrier = threading.Barrier(20)
    codes: list[int] = []

    def click() -> None:
        client = api.test_client()
        barrier.wait()
        codes.append(start(client, admin_headers, epochs=1).status_code)

    threads = [threading.Thread(target=click) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(codes) == [202] + [409] * 19
    session.expire_all()
    (run,) = session.scalars(select(FineTuningRun)).all()
    api.test_client().post(f"/admin/api/cancel-training/{run.id}", headers=admin_headers)
    wait_until_no_run_is_active(session)


def test_auto_deploy_keeps_a_model_in_use_that_the_new_run_does_not_beat(
    api, admin_headers, larger_data, session, workers
):
    client = api.test_client()
    first = start(client, admin_headers, method="head", epochs=2).get_json()["run_id"]
    assert watch(client, admin_headers, first, finished, workers)[-1]["status"] == "completed"
    deployed = client.post(
        f"/admin/api/deploy-model/{first}", json={"force": True}, headers=admin_headers
    )
    assert deployed.status_code == 200, deployed.get_json()
    set_setting(session, "auto_deploy", True)
    session.commit()

    # The same data, method and seed: the same model, so it does not beat the one in use.
    second = start(client, admin_headers, method="head", epochs=2).get_json()["run_id"]
    final = watch(client, admin_headers, second, finished, workers)[-1]
    assert final["status"] == "completed", final["error"]
    results = final["results"]
    assert results["meets_criteria"], results["verdict"]  # it beats the base model
    compared = results["in_use"]
    assert (compared["run_id"], compared["version"]) == (first, f"run-{first}")
    # The same split: the first run trained on none of the second run's test texts.
    assert compared["num_test"] == results["num_test"]
    assert compared["accuracy"] == compared["new_accuracy"] == results["accuracy"]
    assert (compared["new_right"], compared["in_use_right"], compared["new_is_better"]) == (
        0,
        0,
        False,
    )

    # The worker runs auto-deploy just after it marks the run completed: poll for its event.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        history = client.get("/admin/api/deployments", headers=admin_headers).get_json()
        skipped = [event for event in history["events"] if event["outcome"] == "skipped"]
        if skipped:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"auto-deploy recorded no skipped deploy: {history['events']}")
    assert (skipped[0]["run_id"], skipped[0]["actor"]) == (second, "auto-deploy")
    assert skipped[0]["detail"].endswith("the model in use stays")
    session.expire_all()
    assert get_setting(session, "active_model_id") == first
