"""Runs survive short outages: a real worker trains while the test cuts its connections
to PostgreSQL or Redis (a TCP proxy that drops every connection and refuses new ones, as
a restart or failover does). Up to the patience the run completes; past it the run ends
failed with the reason, as soon as the database is back.

The web side (the test client, and the test's own session) talks to the services
directly: only the worker goes through the proxies. One test restarts a real Redis (a
private ``redis-server`` the test starts on a free port; never the machine's own).
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from shared.models import ACTIVE_STATUSES, FineTuningRun
from tests.integration.conftest import WorkerProcess, claimed_redis_database
from tests.integration.test_pipeline import add_banking_examples, finished, start, watch
from tests.outage_proxy import OutageProxy
from tests.private_redis import PrivateRedis

PATIENCE = 12.0  # the worker's SORTLOOP_OUTAGE_PATIENCE here (60 by default)
# Every write fails for longer than the patience in an outage this long, wherever it
# begins: progress writes while training goes on, then the result write when it ends.
LONG_OUTAGE = 2 * PATIENCE + 6


@pytest.fixture(scope="module")
def outage_config(config, tmp_path_factory):
    with claimed_redis_database() as broker_url:
        yield config.with_overrides(
            broker_url=broker_url,
            result_backend=broker_url,
            models_dir=str(tmp_path_factory.mktemp("outage-models")),
            heartbeat_timeout_seconds=300.0,  # the reaper must not be what ends a run here
            training_device="cpu",
            outage_patience_seconds=PATIENCE,
        )


@pytest.fixture(scope="module")
def proxies(outage_config):
    database = OutageProxy.for_url(outage_config.database_url)
    broker = OutageProxy.for_url(outage_config.broker_url)
    yield database, broker
    database.close()
    broker.close()


@pytest.fixture(scope="module")
def proxied_worker(outage_config, proxies, tmp_path_factory):
    database, broker = proxies
    worker_config = outage_config.with_overrides(
        database_url=database.url(outage_config.database_url),
        broker_url=broker.url(outage_config.broker_url),
        result_backend=broker.url(outage_config.result_backend),
    )
    worker = WorkerProcess(worker_config, tmp_path_factory.mktemp("outage") / "worker.log")
    worker.start()
    worker.wait_ready()
    yield worker
    worker.stop()


class OneWorker:
    def __init__(self, worker: WorkerProcess) -> None:
        self.current = worker


@pytest.fixture
def api(outage_config, engine, proxied_worker):
    from web import create_app

    app = create_app(outage_config)
    app.config.update(TESTING=True)
    return app.test_client()


@pytest.fixture
def training_data(session):
    add_banking_examples(session, 30)


def training_steps(status: dict) -> bool:
    """The trainer is stepping (so it writes progress every second), or the run ended."""
    stepping = status["status"] == "training" and (status["stage"] or "").startswith(
        "training: step"
    )
    return stepping or finished(status)


def train_through(api, admin_headers, proxied_worker, outage) -> dict:
    """Start a LoRA run, run ``outage`` once the trainer steps, return the final status."""
    response = start(api, admin_headers, method="lora", epochs=4)
    assert response.status_code == 202, response.get_json()
    run_id = response.get_json()["run_id"]
    workers = OneWorker(proxied_worker)
    seen = watch(api, admin_headers, run_id, training_steps, workers)
    assert seen[-1]["status"] == "training", "the run ended before the outage could start"
    outage()
    return watch(api, admin_headers, run_id, finished, workers)[-1]


def no_run_is_active(session) -> bool:
    session.expire_all()
    return not session.scalar(
        select(func.count())
        .select_from(FineTuningRun)
        .where(FineTuningRun.status.in_(ACTIVE_STATUSES))
    )


def test_a_run_completes_across_a_six_second_database_outage(
    api, admin_headers, training_data, session, proxied_worker, proxies
):
    database, _ = proxies

    final = train_through(api, admin_headers, proxied_worker, lambda: database.outage(6))

    assert final["status"] == "completed", final["error"]
    assert [step["status"] for step in final["timeline"]][-1] == "completed"
    assert "progress not written" in proxied_worker.log_text(), "the outage missed the trainer"
    assert no_run_is_active(session)
    assert start(api, admin_headers, method="head").status_code == 202, "nothing blocks a new run"


def test_a_run_completes_across_a_redis_restart(
    api, admin_headers, training_data, session, proxied_worker, proxies
):
    _, broker = proxies

    final = train_through(api, admin_headers, proxied_worker, lambda: broker.outage(6))

    assert final["status"] == "completed", final["error"]
    assert "Connection to broker lost" in proxied_worker.log_text(), "the outage missed the worker"
    assert no_run_is_active(session)


def test_a_longer_database_outage_fails_the_run_with_the_reason_once_it_is_back(
    api, admin_headers, training_data, session, proxied_worker, proxies
):
    database, _ = proxies
    cut_at: list[float] = []

    def long_outage() -> None:
        cut_at.append(time.monotonic())
        # Back in the background: the run must be failed soon after, not before.
        database.cut()
        threading.Timer(LONG_OUTAGE, database.restore).start()

    final = train_through(api, admin_headers, proxied_worker, long_outage)

    assert final["status"] == "failed"
    assert f"database was unreachable for more than {PATIENCE:g} s" in final["error"]
    assert time.monotonic() - cut_at[0] >= LONG_OUTAGE, "failed before the database was back"
    assert time.monotonic() - cut_at[0] < LONG_OUTAGE + 30, "failed long after it was back"
    assert no_run_is_active(session)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory):
    server = PrivateRedis(tmp_path_factory.mktemp("private-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private_redis_worker(outage_config, private_redis, tmp_path_factory):
    worker_config = outage_config.with_overrides(
        broker_url=private_redis.url, result_backend=private_redis.url
    )
    worker = WorkerProcess(worker_config, tmp_path_factory.mktemp("restart") / "worker.log")
    worker.start()
    worker.wait_ready()
    yield worker
    worker.stop()


@pytest.fixture
def private_redis_api(outage_config, engine, private_redis, private_redis_worker):
    from web import create_app

    app = create_app(
        outage_config.with_overrides(broker_url=private_redis.url, result_backend=private_redis.url)
    )
    app.config.update(TESTING=True)
    return app.test_client()


def test_a_run_completes_across_a_real_redis_server_restart(
    private_redis_api, admin_headers, training_data, session, private_redis, private_redis_worker
):
    """redis-server stopped (SIGTERM) and started again mid-run, as an operator would."""
    final = train_through(
        private_redis_api,
        admin_headers,
        private_redis_worker,
        lambda: private_redis.restart(down_seconds=4),
    )

    assert private_redis.restarts == 1
    assert final["status"] == "completed", final["error"]
    assert "Connection to broker lost" in private_redis_worker.log_text(), "the restart missed"
    assert no_run_is_active(session)
    after = start(private_redis_api, admin_headers, method="head")
    assert after.status_code == 202, "nothing blocks a new run"
    second = watch(
        private_redis_api,
        admin_headers,
        after.get_json()["run_id"],
        finished,
        OneWorker(private_redis_worker),
    )[-1]
    assert second["status"] == "completed", "the worker takes new work after the restart"
