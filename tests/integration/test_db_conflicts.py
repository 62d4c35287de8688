"""A transaction PostgreSQL ends to break a deadlock is repeated, and named a conflict.

Two real connections take two rows in opposite orders. PostgreSQL ends one of them
(the one with the shorter ``deadlock_timeout``); ``retry_through_outage`` repeats that
one's whole unit of work once the other has committed, and logs a conflict, not an
outage.
"""

from __future__ import annotations

import logging
import threading

import pytest

from shared.db import retry_through_outage


@pytest.fixture
def probe_table(engine):
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE conflict_probe (id integer PRIMARY KEY, writes integer NOT NULL)"
        )
        connection.exec_driver_sql("INSERT INTO conflict_probe VALUES (1, 0), (2, 0)")
    yield
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE conflict_probe")


def test_a_deadlocked_transaction_is_repeated_and_logged_as_a_conflict(engine, probe_table, caplog):
    second_row_taken = threading.Event()
    attempts: list[int] = []
    outcome: dict[str, object] = {}

    def transaction() -> int:
        attempts.append(1)
        with engine.begin() as connection:
            # This side detects the deadlock first, so PostgreSQL ends this side.
            connection.exec_driver_sql("SET LOCAL deadlock_timeout = '100ms'")
            connection.exec_driver_sql("UPDATE conflict_probe SET writes = writes + 1 WHERE id = 2")
            second_row_taken.set()
            connection.exec_driver_sql("UPDATE conflict_probe SET writes = writes + 1 WHERE id = 1")
        return len(attempts)

    def retried() -> None:
        try:
            outcome["attempts"] = retry_through_outage(
                transaction, patience=10, what="the probe's two rows"
            )
        except Exception as error:  # reported to the test below
            outcome["error"] = error

    caplog.set_level(logging.WARNING, logger="shared.db")
    with engine.connect() as other, other.begin():
        other.exec_driver_sql("SET LOCAL deadlock_timeout = '10s'")
        other.exec_driver_sql("UPDATE conflict_probe SET writes = writes + 1 WHERE id = 1")
        worker = threading.Thread(target=retried)
        worker.start()
        assert second_row_taken.wait(10)
        # Waits for row 2, which the thread holds while it waits for row 1.
        other.exec_driver_sql("UPDATE conflict_probe SET writes = writes + 1 WHERE id = 2")
    worker.join(15)

    assert "error" not in outcome, outcome.get("error")
    assert outcome["attempts"] == 2, "the ended transaction ran once more, and succeeded"
    with engine.connect() as connection:
        writes = dict(connection.exec_driver_sql("SELECT id, writes FROM conflict_probe").all())
    assert writes == {1: 2, 2: 2}, "the ended attempt left nothing; both others wrote once"
    warnings = [r.getMessage() for r in caplog.records if r.name == "shared.db"]
    assert len(warnings) == 1
    assert warnings[0].startswith("database conflict what=the probe's two rows")
    assert "deadlock detected" in warnings[0]
