"""The foundation against real services: migrations, constraints, broker round trip."""

import pytest
from celery import Celery
from sqlalchemy.exc import IntegrityError

from shared import migrations, task_names
from tests.factories import make_run


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'migrations.db'}"


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_migrations_go_up_down_and_up_and_match_the_models(database, request, tmp_path):
    if database == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
        migrations.upgrade(url)
    assert migrations.schema_differences(url) == []
    migrations.downgrade(url, "base")
    assert migrations.schema_differences(url) != []
    migrations.upgrade(url)
    assert migrations.schema_differences(url) == []


def test_postgres_refuses_a_second_active_run(session):
    make_run(session, status="preparing")
    session.commit()
    with pytest.raises(IntegrityError):
        make_run(session, status="queued")
        session.commit()


def test_postgres_refuses_a_second_active_model(session):
    make_run(session, status="completed", is_active_model=True)
    session.commit()
    with pytest.raises(IntegrityError):
        make_run(session, status="completed", is_active_model=True)
        session.commit()


def test_ping_task_round_trips_through_the_real_broker(config, celery_worker_process):
    client = Celery(broker=config.broker_url, backend=config.result_backend)
    result = client.send_task(task_names.PING, args=["hello"], queue=task_names.DEFAULT_QUEUE)
    assert result.get(timeout=30)["payload"] == "hello"


def test_the_worker_preloads_the_training_stack_before_forking(celery_worker_process):
    """Its task children start with torch & co. imported (no 4-5 s import per step)."""
    celery_worker_process.log.flush()
    log = celery_worker_process.log_path.read_text(errors="replace")
    assert "training stack preloaded" in log, log[-3000:]


def test_healthz_is_ok_with_real_database_and_broker(client):
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok"
    assert body["db"] is True
    assert body["broker"] is True
