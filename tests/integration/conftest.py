"""Integration tier: the real PostgreSQL and Redis on this machine, a real Celery worker process.

Each test session creates and drops its own PostgreSQL database and claims a Redis
database number of its own, so several sessions (or developers) can run side by side.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from shared import migrations
from shared.config import Config
from shared.db import make_engine, make_session_factory, retry_through_outage
from shared.models import Base

REPO_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL = os.environ.get(
    "SORTLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_HOST_URL = os.environ.get("SORTLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379")
LOCK_KEY = "sortloop:test-session-lock"


def _unavailable(what: str, error: Exception):
    message = f"{what} is not reachable: {error}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: integration tests must not skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated to head, dropped after the session."""
    name = f"sortloop_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # pragma: no cover - depends on the machine
        _unavailable("PostgreSQL", error)
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    migrations.upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@contextmanager
def claimed_redis_database() -> Iterator[str]:
    """A Redis database number nobody else is using, flushed before and after."""
    token = uuid.uuid4().hex
    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS_HOST_URL}/{number}", socket_connect_timeout=2)
        try:
            claimed = client.set(LOCK_KEY, token, nx=True, ex=3 * 3600)
        except redis.RedisError as error:  # pragma: no cover - depends on the machine
            _unavailable("Redis", error)
        if claimed:
            for key in client.scan_iter():
                if key != LOCK_KEY.encode():
                    client.delete(key)
            yield f"{REDIS_HOST_URL}/{number}"
            client.flushdb()
            return
    pytest.fail("no free Redis database number (1-15) for this test session")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The session's own Redis database (broker and results)."""
    with claimed_redis_database() as url:
        yield url


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def config(postgres_url, redis_url, models_dir) -> Config:
    return Config.from_env(
        {
            "DATABASE_URL": postgres_url,
            "CELERY_BROKER_URL": redis_url,
            "CELERY_RESULT_BACKEND": redis_url,
            "MODELS_DIR": str(models_dir),
            "SECRET_KEY": "integration-secret-8d2e6b0f4a1c9e7d3b5f",
            "SORTLOOP_ADMIN_TOKEN": "integration-token",
            "SORTLOOP_HEARTBEAT_TIMEOUT": "20",
            "SORTLOOP_BEAT_INTERVAL": "2",
        }
    )


def config_environment(config: Config) -> dict[str, str]:
    """The environment variables that reproduce `config` in a child process."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": config.database_url,
            "CELERY_BROKER_URL": config.broker_url,
            "CELERY_RESULT_BACKEND": config.result_backend,
            "MODELS_DIR": config.models_dir,
            "BASE_MODEL": config.base_model,
            "BASE_MODEL_KIND": config.base_model_kind,
            "SORTLOOP_WORKER_BATCH_SIZE": str(config.worker_batch_size),
            "SECRET_KEY": config.secret_key,
            "SORTLOOP_ADMIN_TOKEN": config.admin_token,
            "SORTLOOP_HEARTBEAT_TIMEOUT": str(config.heartbeat_timeout_seconds),
            "SORTLOOP_BEAT_INTERVAL": str(config.beat_interval_seconds),
            "SORTLOOP_TRAINING_DEVICE": config.training_device,
            "SORTLOOP_MAX_BATCH_TOKENS": str(config.training_max_batch_tokens),
            "SORTLOOP_GRADIENT_ACCUMULATION": str(config.training_gradient_accumulation),
            "SORTLOOP_OUTAGE_PATIENCE": str(config.outage_patience_seconds),
            "SORTLOOP_NOTIFY_RETRY_SECONDS": str(config.notify_retry_seconds),
            "SORTLOOP_NOTIFY_MAX_ATTEMPTS": str(config.notify_max_attempts),
            "SORTLOOP_WEBHOOK_TIMEOUT": str(config.webhook_timeout_seconds),
            "SORTLOOP_SMTP_HOST": config.smtp_host,
            "SORTLOOP_SMTP_PORT": str(config.smtp_port),
            "SORTLOOP_SMTP_TLS": config.smtp_tls,
            "SORTLOOP_SMTP_USERNAME": config.smtp_username,
            "SORTLOOP_SMTP_PASSWORD": config.smtp_password,
            "SORTLOOP_SMTP_FROM": config.smtp_from,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="session")
def engine(config):
    engine = make_engine(config.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def empty_tables(request, engine) -> None:
    """Every integration test starts from empty tables (the schema stays)."""
    if "postgres_url" not in request.fixturenames and "engine" not in request.fixturenames:
        return
    names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    statement = text(f"TRUNCATE {names} RESTART IDENTITY CASCADE")

    def empty() -> None:
        with engine.begin() as connection:
            connection.execute(statement)

    # The session's Celery worker (or a task of the previous test still finishing)
    # may read two tables while TRUNCATE locks them one by one; PostgreSQL then fails
    # one side of the deadlock. When that side is us, the product's own retry (with
    # its backoff, which lets the worker's transaction end first) empties them again.
    retry_through_outage(empty, patience=10, what="emptying the test tables")


@pytest.fixture
def session(engine) -> Iterator[Session]:
    session = make_session_factory(engine)()
    yield session
    session.close()


@pytest.fixture
def models_config(config, tmp_path) -> Config:
    """The config with a models volume of the test's own: run ids restart with the
    truncated tables, so two tests never share a run's folder."""
    return config.with_overrides(models_dir=str(tmp_path / "models"))


@pytest.fixture
def app_config(config) -> Config:
    """The config the test's app is built with; a module overrides it (``models_config``)."""
    return config


@pytest.fixture
def app(app_config, engine):
    from web import create_app

    app = create_app(app_config)
    app.config.update(TESTING=True)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": "Bearer integration-token"}


class WorkerProcess:
    """A real `celery -A worker.celery_app worker` child process, with its log kept for failures."""

    def __init__(self, config: Config, log_path: Path, queues: str = "training,default,inference"):
        self.config = config
        self.log_path = log_path
        self.queues = queues
        self.process: subprocess.Popen | None = None

    def start(self, beat: bool = False) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "-Q", self.queues, "--concurrency", "1", "--loglevel", "INFO",
            "--hostname", f"test-{uuid.uuid4().hex[:6]}@%h", "--without-gossip",
            "--without-mingle",
        ]  # fmt: skip
        if beat:
            command += ["-B", "--schedule", str(self.log_path.with_suffix(".schedule"))]
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=config_environment(self.config),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        from celery import Celery

        from shared import task_names

        client = Celery(broker=self.config.broker_url, backend=self.config.result_backend)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_text()}")
            result = client.send_task(task_names.PING, args=["ready?"], queue="default")
            try:
                result.get(timeout=5)
                return
            except Exception:
                continue
        raise RuntimeError(f"worker not ready in {timeout}s:\n{self.log_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole process group (the main process and its pool children)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture(scope="session")
def celery_worker_process(config, tmp_path_factory) -> Iterator[WorkerProcess]:
    """One real worker for the session, consuming both queues."""
    worker = WorkerProcess(config, tmp_path_factory.mktemp("worker") / "worker.log")
    worker.start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
