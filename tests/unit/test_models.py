import pytest
from sqlalchemy.exc import IntegrityError

from tests.factories import make_run


def test_second_active_run_is_refused_by_the_database(session):
    make_run(session, status="training")
    session.commit()
    with pytest.raises(IntegrityError):
        make_run(session, status="queued")
        session.commit()


def test_a_finished_run_frees_the_slot_for_the_next(session):
    run = make_run(session, status="training")
    session.commit()
    run.status = "failed"
    session.commit()
    assert run.active_lock is None
    following = make_run(session, status="queued")
    session.commit()
    assert following.active_lock is True
    finished = [make_run(session, status=status) for status in ("completed", "cancelled")]
    session.commit()
    assert [r.active_lock for r in (run, *finished)] == [None, None, None]


def test_second_active_model_is_refused_by_the_database(session):
    make_run(session, status="completed", is_active_model=True)
    session.commit()
    with pytest.raises(IntegrityError):
        make_run(session, status="completed", is_active_model=True)
        session.commit()


def test_active_lock_cannot_disagree_with_status(session):
    from sqlalchemy import text

    run = make_run(session, status="completed")
    session.commit()
    with pytest.raises(IntegrityError):
        session.execute(
            text("UPDATE fine_tuning_runs SET active_lock = 1 WHERE id = :id"), {"id": run.id}
        )
        session.commit()


def test_unknown_status_is_refused(session):
    with pytest.raises(ValueError, match="unknown run status"):
        make_run(session, status="done")


def test_timestamps_come_back_in_utc(session):
    run = make_run(session, status="completed")
    session.commit()
    session.expire_all()
    assert run.created_at.utcoffset().total_seconds() == 0
