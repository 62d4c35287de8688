"""The active model: lazy load once, swap on deploy/rollback, keep the old model on failure."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from shared.classifier.base import CategorySpec
from shared.db import make_engine, make_session_factory
from shared.deployment.active_model import ActiveModel
from shared.deployment.deployed import set_deployed
from shared.models import DeploymentEvent, FineTuningRun
from tests.factories import make_run
from tests.unit.fakes import KeywordClassifier

CATEGORIES = [CategorySpec("roads", "roads"), CategorySpec("other", "anything")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loaders:
    """Counts loads; a fine-tuned load fails when its adapter dir says so."""

    def __init__(self, delay: float = 0.0) -> None:
        self.base_loads = 0
        self.finetuned_loads: list[str] = []
        self.delay = delay

    def base(self, _config):
        time.sleep(self.delay)
        self.base_loads += 1
        return KeywordClassifier(version="ignored")

    def finetuned(self, _config, adapter_dir: str, version: str):
        self.finetuned_loads.append(adapter_dir)
        if "broken" in adapter_dir:
            raise ValueError("adapter_config.json is missing")
        return KeywordClassifier(version=version)


@pytest.fixture
def sessions(config, session):
    return make_session_factory(make_engine(config.database_url))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def loaders():
    return Loaders()


@pytest.fixture
def model(config, sessions, loaders, clock):
    return ActiveModel(
        config, sessions, load_base=loaders.base, load_finetuned=loaders.finetuned, clock=clock
    )


def activate(session, run_id):
    set_deployed(session, None if run_id is None else session.get(FineTuningRun, run_id))
    session.commit()


def test_nothing_loads_until_the_first_classification(model, loaders):
    assert model.current_version().startswith("base:")
    assert model.get_model_info()["kind"] == "base"
    assert loaders.base_loads == 0
    model.classify(["a road"], CATEGORIES)
    model.classify(["a road"], CATEGORIES)
    assert loaders.base_loads == 1


def test_concurrent_first_requests_load_the_model_once(config, sessions, clock):
    slow = Loaders(delay=0.2)
    model = ActiveModel(config, sessions, load_base=slow.base, clock=clock)
    threads = [threading.Thread(target=model.classify, args=(["x"], CATEGORIES)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert slow.base_loads == 1


def test_a_deployed_model_is_picked_up_after_the_check_interval(model, session, loaders, clock):
    assert model.classify(["road"], CATEGORIES).version.startswith("base:")
    run = make_run(
        session, status="completed", model_path="/models/run_1", results={"accuracy": 0.9}
    )
    activate(session, run.id)
    # Within the interval the old model keeps serving without a database read.
    assert model.classify(["road"], CATEGORIES).version.startswith("base:")
    clock.now += 60
    result = model.classify(["road"], CATEGORIES)
    assert result.version == f"run-{run.id}"
    assert loaders.finetuned_loads == ["/models/run_1"]
    info = model.get_model_info()
    assert info["kind"] == "finetuned"
    assert info["run_id"] == run.id
    assert info["metrics"] == {"accuracy": 0.9}


def test_on_a_gpu_the_deployed_model_is_built_on_the_base_model_in_memory(
    config, sessions, session, loaders, clock
):
    """A worker of the inference queue on a GPU (SORTLOOP_INFERENCE_DEVICE) moves the
    base model there once and builds every fine-tuned model on it; ONNX Runtime, a CPU
    path, is not used there even when it is the configured backend."""
    from dataclasses import replace

    model = ActiveModel(
        replace(config, inference_backend="onnx"),
        sessions,
        load_base=loaders.base,
        load_finetuned=loaders.finetuned,
        clock=clock,
        device="cuda",
    )
    run = make_run(session, status="completed", model_path="/models/run_1")
    activate(session, run.id)
    assert model.classify(["road"], CATEGORIES).version == f"run-{run.id}"
    assert loaders.base_loads == 1 and loaders.finetuned_loads == ["/models/run_1"]
    assert model.process_info()["inference_backend"] == "torch"
    activate(session, None)
    model.refresh()
    assert model.classify(["road"], CATEGORIES).version.startswith("base:")
    assert loaders.base_loads == 1  # the base in memory serves the rollback


def test_rollback_returns_to_the_cached_base_model(model, session, loaders, clock):
    model.classify(["road"], CATEGORIES)
    run = make_run(session, status="completed", model_path="/models/run_1")
    activate(session, run.id)
    model.refresh()
    assert model.current_version() == f"run-{run.id}"
    activate(session, None)
    model.refresh()
    assert model.current_version().startswith("base:")
    assert loaders.base_loads == 1


def test_a_classifier_in_use_finishes_on_the_old_model_after_a_swap(model, session):
    old, old_version = model.classifier()
    run = make_run(session, status="completed", model_path="/models/run_1")
    activate(session, run.id)
    model.refresh()
    new, new_version = model.classifier()
    assert new is not old and new_version != old_version
    assert old.classify(["road"], CATEGORIES)  # the old object still works for its caller


def test_a_failed_load_keeps_the_old_model_and_is_recorded_once(model, session, loaders, clock):
    model.classify(["road"], CATEGORIES)
    run = make_run(session, status="completed", model_path="/models/broken")
    activate(session, run.id)
    model.refresh()
    assert model.classify(["road"], CATEGORIES).version.startswith("base:")
    clock.now += 60
    model.classify(["road"], CATEGORIES)
    assert loaders.finetuned_loads == ["/models/broken"]  # not retried every check
    events = session.scalars(select(DeploymentEvent)).all()
    assert [(e.action, e.outcome, e.run_id) for e in events] == [("load", "failed", run.id)]
    assert "adapter_config.json is missing" in events[0].detail
    info = model.get_model_info()
    assert info["kind"] == "base"
    assert info["active_model_id"] == run.id
    assert "adapter_config.json is missing" in info["load_error"]


def test_a_broken_active_model_at_startup_falls_back_to_the_base_model(model, session, loaders):
    run = make_run(session, status="completed", model_path="/models/broken")
    activate(session, run.id)
    result = model.classify(["road"], CATEGORIES)
    assert result.version.startswith("base:")
    assert model.get_model_info()["load_error"]


def test_a_run_without_a_published_model_is_a_recorded_failure(model, session):
    model.classify(["road"], CATEGORIES)
    run = make_run(session, status="completed", model_path=None)
    activate(session, run.id)
    model.refresh()
    assert model.current_version().startswith("base:")
    assert "no published model" in model.get_model_info()["load_error"]


def test_the_analyzer_on_the_app_reports_model_info(app, client, admin_headers):
    response = client.get("/admin/api/model-info", headers=admin_headers)
    body = response.get_json()
    assert response.status_code == 200
    assert body["kind"] == "base"
    assert body["version"].startswith("base:")
    assert body["base_model"] == "all-MiniLM-L6-v2"
    assert body["run_id"] is None and body["metrics"] is None
    assert app.extensions["sortloop_analyzer"].active_model._loaded is None  # no load for info


def test_a_status_read_does_not_postpone_the_swap(model, session, loaders, clock):
    """A model-info read used to restart the check timer: the next submission then
    kept the old model for another interval."""
    model.classify(["road"], CATEGORIES)
    run = make_run(session, status="completed", model_path="/models/run_1")
    activate(session, run.id)
    clock.now += 60
    assert model.get_model_info()["active_model_id"] == run.id  # a status read
    assert model.classify(["road"], CATEGORIES).version == f"run-{run.id}"


def test_the_watcher_loads_and_swaps_with_no_request_in_flight(config, sessions, session):
    from shared.deployment.audit import record_event

    loaders = Loaders()
    model = ActiveModel(
        config.with_overrides(model_check_interval_seconds=0.05),
        sessions,
        load_base=loaders.base,
        load_finetuned=loaders.finetuned,
    )
    model.watch()
    try:
        wait_for(lambda: loaders.base_loads == 1)  # loaded before any request
        run = make_run(session, status="completed", model_path="/models/run_7")
        set_deployed(session, run)  # as the registry deploys: the flag and its event
        record_event(session, "deploy", run_id=run.id, to_version=f"run-{run.id}", actor="test")
        session.commit()
        wait_for(lambda: model.current_version() == f"run-{run.id}")
        info = model.get_model_info()
        assert info["kind"] == "finetuned" and info["run_id"] == run.id
        assert info["process"]["watching"] is True
        assert info["process"]["checked_at"] and info["process"]["swapped_at"]
        assert 0 <= info["process"]["reload_lag_seconds"] < 30
        activate(session, None)
        wait_for(lambda: model.current_version().startswith("base:"))
        assert loaders.base_loads == 1  # the base model was kept, not reloaded
    finally:
        model.stop_watching()
    assert model.get_model_info()["process"]["watching"] is False


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)  # poll: the watcher thread swaps on its own schedule
