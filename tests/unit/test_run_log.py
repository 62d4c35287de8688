"""A run's log: what its step's thread logged, kept beside the run, shown and downloaded."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import sessionmaker

from shared.training.lifecycle import finish_run
from shared.training.run_log import MAX_LINES_PER_RUN, read_run_log, run_log_text
from tests.factories import make_run
from worker.run_log import RunLogHandler, capture_run_log

logger = logging.getLogger("worker.fine_tuning.test")


def _sessions(session):
    return sessionmaker(bind=session.get_bind(), expire_on_commit=False)


def test_a_step_keeps_its_lines_and_a_failures_traceback(session) -> None:
    run = make_run(session, status="training")
    session.commit()
    with capture_run_log(run.id, _sessions(session)):
        logger.info("epoch=%d train_loss=%.4f", 1, 0.5)
        try:
            raise ValueError("the adapter is broken")
        except ValueError:
            logger.exception("run=%s step=train failed", run.id)

    lines = read_run_log(session, run.id)
    assert [line.message.splitlines()[0] for line in lines] == [
        "epoch=1 train_loss=0.5000",
        f"run={run.id} step=train failed",
    ]
    assert lines[1].level == "ERROR"
    assert "Traceback (most recent call last)" in lines[1].message
    assert "ValueError: the adapter is broken" in lines[1].message
    text = run_log_text(lines)
    assert " INFO worker.fine_tuning.test: epoch=1 train_loss=0.5000\n" in text


def test_lines_of_other_threads_and_debug_lines_stay_out(session) -> None:
    run = make_run(session, status="training")
    session.commit()
    with capture_run_log(run.id, _sessions(session)):
        logger.debug("too chatty for the run page")
        other = threading.Thread(target=lambda: logger.info("another task's line"))
        other.start()
        other.join()
        logger.info("this step's line")
    assert [line.message for line in read_run_log(session, run.id)] == ["this step's line"]


def test_the_end_of_a_run_is_its_last_line_whoever_ends_it(session) -> None:
    run = make_run(session, status="training")
    session.commit()
    with capture_run_log(run.id, _sessions(session)):
        logger.info("training")
        assert finish_run(session, run.id, "failed", error="worker lost")
        session.commit()
    messages = [line.message for line in read_run_log(session, run.id)]
    # finish_run's own log record is not captured a second time
    assert messages == ["training", "run failed: worker lost"]


def test_lines_wait_in_the_buffer_while_the_database_is_down(session) -> None:
    run = make_run(session, status="training")
    session.commit()

    def no_database():
        raise ConnectionError("database down")

    handler = RunLogHandler(run.id, no_database, flush_interval=0)
    handler.emit(logger.makeRecord(logger.name, logging.INFO, __file__, 1, "kept", (), None))
    assert [line.message for line in handler.buffer] == ["kept"]
    handler.sessions = _sessions(session)
    handler.flush()
    assert [line.message for line in read_run_log(session, run.id)] == ["kept"]


def test_a_runaway_log_is_capped_and_says_so(session) -> None:
    run = make_run(session, status="training")
    session.commit()
    with capture_run_log(run.id, _sessions(session)):
        for number in range(MAX_LINES_PER_RUN + 10):
            logger.info("line %d", number)
        logger.info("the last line")
    lines = read_run_log(session, run.id)
    assert len(lines) == MAX_LINES_PER_RUN
    assert any("lines dropped" in line.message for line in lines)
    assert lines[-1].message == "the last line"


def test_the_run_page_shows_the_log_and_offers_it_as_a_download(
    client, session, admin_headers
) -> None:
    run = make_run(session, status="training")
    session.commit()
    with capture_run_log(run.id, _sessions(session)):
        logger.info("data validated examples=24")
    finish_run(session, run.id, "failed", error="train failed: OSError: no such model")
    session.commit()

    page = client.get(f"/admin/training/runs/{run.id}", headers=admin_headers)
    html = page.get_data(as_text=True)
    assert "data validated examples=24" in html
    assert "run failed: train failed: OSError: no such model" in html
    download = client.get(f"/admin/training/runs/{run.id}/log.txt", headers=admin_headers)
    assert download.status_code == 200
    assert download.mimetype == "text/plain"
    assert "attachment" in download.headers["Content-Disposition"]
    assert (
        download.get_data(as_text=True)
        .splitlines()[0]
        .endswith("INFO worker.fine_tuning.test: data validated examples=24")
    )
    answer = client.get(f"/admin/api/runs/{run.id}/log", headers=admin_headers).get_json()
    assert [line["message"] for line in answer["lines"]] == [
        "data validated examples=24",
        "run failed: train failed: OSError: no such model",
    ]
    assert client.get("/admin/api/runs/999/log", headers=admin_headers).status_code == 404
