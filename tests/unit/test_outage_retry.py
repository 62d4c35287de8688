"""Worker writes retry through a database outage, and give up past the patience."""

from __future__ import annotations

import pytest
from sqlalchemy import exc

from shared.db import DatabaseOutage, make_session_factory, retry_through_outage
from shared.models import FineTuningRun
from tests.factories import make_run
from worker.progress import ProgressWriter


def connection_refused() -> exc.OperationalError:
    return exc.OperationalError("SELECT 1", None, Exception("connection refused"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_a_transaction_is_repeated_with_backoff_until_the_database_answers():
    clock = FakeClock()
    failures = iter([connection_refused()] * 6)

    def transaction() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "written"

    result = retry_through_outage(
        transaction, patience=60, what="progress", sleep=clock.sleep, clock=clock
    )

    assert result == "written"
    assert clock.sleeps == sorted(clock.sleeps), "the delays grow"
    assert max(clock.sleeps) <= 5.0


def test_past_the_patience_the_outage_is_named():
    clock = FakeClock()

    def transaction() -> None:
        raise connection_refused()

    with pytest.raises(DatabaseOutage, match=r"unreachable for more than 60 s \(recording\)"):
        retry_through_outage(
            transaction, patience=60, what="recording", sleep=clock.sleep, clock=clock
        )
    assert 60 <= clock.now < 66


def test_a_refused_statement_is_not_retried():
    calls = []

    def transaction() -> None:
        calls.append(1)
        raise exc.IntegrityError("INSERT", None, Exception("duplicate key"))

    with pytest.raises(exc.IntegrityError):
        retry_through_outage(transaction, patience=60, what="x", sleep=lambda _: None)
    assert len(calls) == 1


class FlakySessions:
    """A session factory whose database can be made unreachable."""

    def __init__(self, factory) -> None:
        self.factory = factory
        self.down = False

    def __call__(self):
        if self.down:
            raise connection_refused()
        return self.factory()


def test_training_goes_on_through_a_short_outage_and_stops_past_the_patience(session):
    run = make_run(session, status="training")
    session.commit()
    sessions = FlakySessions(make_session_factory(session.get_bind()))
    now = [100.0]
    writer = ProgressWriter(
        run.id,
        sessions,
        "training",
        (0.2, 0.8),
        interval=0.0,
        outage_patience_seconds=0.3,
        clock=lambda: now[0],
    )
    writer("training", 1, 10, 1, 0.9, None)

    sessions.down = True
    writer("training", 2, 10, 1, 0.8, None)  # no exception: training goes on
    assert writer.should_cancel() is False
    sessions.down = False
    writer("training", 3, 10, 1, 0.7, None)
    session.expire_all()
    assert session.get(FineTuningRun, run.id).loss == pytest.approx(0.7)

    sessions.down = True
    writer("training", 4, 10, 1, 0.6, None)
    now[0] += 0.35  # the outage outlasts the patience
    with pytest.raises(DatabaseOutage, match="more than 0.3 s"):
        writer("training", 5, 10, 1, 0.5, None)


def deadlock() -> exc.OperationalError:
    import psycopg.errors

    return exc.OperationalError(
        "UPDATE runs", None, psycopg.errors.DeadlockDetected("deadlock detected")
    )


def test_a_conflict_is_retried_and_named_a_conflict_not_an_outage(caplog):
    clock = FakeClock()

    def transaction() -> None:
        raise deadlock()

    with pytest.raises(DatabaseOutage, match=r"kept ending this work in conflicts") as raised:
        retry_through_outage(
            transaction, patience=10, what="recording", sleep=clock.sleep, clock=clock
        )
    assert "unreachable" not in str(raised.value)
    assert len(clock.sleeps) > 1, "it was retried"
    assert all("database conflict" in r.getMessage() for r in caplog.records)
    assert caplog.records
