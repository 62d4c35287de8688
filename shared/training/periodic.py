"""What beat runs for training: auto-train when enough new examples arrived, and the
reaper that fails runs whose worker is gone."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from shared.errors import Conflict, InvalidInput
from shared.models import ACTIVE_STATUSES, FineTuningRun, TrainingExample, utcnow
from shared.notifications.events import emit_event
from shared.settings_store import get_all_settings
from shared.training.lifecycle import finish_run
from shared.training.runs import Enqueue, running_run, start_training_run

logger = logging.getLogger(__name__)


def new_examples_since_last_run(session: Session) -> int:
    """Examples not yet used in training and decided after the newest run was created.

    Counting from the last run (whatever its outcome) means a failed run is not retried
    on every beat: only new corrections trigger another attempt.
    """
    last_created = session.scalar(select(func.max(FineTuningRun.created_at)))
    query = select(func.count(TrainingExample.id)).where(
        TrainingExample.used_in_training.is_(False)
    )
    if last_created is not None:
        query = query.where(TrainingExample.correction_timestamp > last_created)
    return int(session.scalar(query) or 0)


def maybe_auto_train(session: Session, *, base_model: str, enqueue: Enqueue) -> int | None:
    """Start a run with the default config when ``auto_train`` is on, no run is active and
    at least ``min_training_examples`` new examples arrived since the last run.
    Returns the new run id, or None."""
    settings = get_all_settings(session)
    if not settings["auto_train"] or not settings["fine_tuning_enabled"]:
        return None
    if running_run(session) is not None:
        return None
    new = new_examples_since_last_run(session)
    if new < int(settings["min_training_examples"]):
        return None
    try:
        run = start_training_run(
            session, {}, base_model=base_model, enqueue=enqueue, created_by="auto-train"
        )
    except (Conflict, InvalidInput) as reason:
        logger.info("auto-train skipped: %s", reason)
        session.rollback()
        return None
    emit_event(session, "auto_train.started", run=run, data={"new_examples": new})
    session.commit()
    logger.info("auto-train started run=%s new_examples=%d", run.id, new)
    return run.id


# --- reaper -----------------------------------------------------------------------------

# A queued run whose chain nobody consumes (no training worker) waits this many heartbeat
# timeouts before it is failed, so it cannot block every later run.
QUEUED_TIMEOUT_FACTOR = 6


def reap_stale_runs(
    session: Session, heartbeat_timeout_seconds: float, now: datetime | None = None
) -> list[int]:
    """Fail runs whose worker is gone: a running run with no heartbeat for the timeout, or
    a queued run nobody picked up for ``QUEUED_TIMEOUT_FACTOR`` timeouts. Commits; returns
    the failed run ids."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=heartbeat_timeout_seconds)
    queued_cutoff = now - timedelta(seconds=heartbeat_timeout_seconds * QUEUED_TIMEOUT_FACTOR)
    running = tuple(status for status in ACTIVE_STATUSES if status != "queued")
    last_sign_of_life = func.coalesce(
        FineTuningRun.heartbeat_at, FineTuningRun.started_at, FineTuningRun.created_at
    )
    stale = session.scalars(
        select(FineTuningRun).where(
            or_(
                FineTuningRun.status.in_(running) & (last_sign_of_life < cutoff),
                (FineTuningRun.status == "queued") & (FineTuningRun.created_at < queued_cutoff),
            )
        )
    ).all()
    reaped = []
    for run in stale:
        if run.status == "queued":
            reason = (
                f"no training worker picked the run up within "
                f"{heartbeat_timeout_seconds * QUEUED_TIMEOUT_FACTOR:g} s"
            )
        else:
            reason = (
                f"worker lost: no heartbeat for more than {heartbeat_timeout_seconds:g} s "
                f"while {run.status}"
            )
        if finish_run(session, run.id, "failed", error=reason, only_if=(run.status,)):
            reaped.append(run.id)
    session.commit()
    if reaped:
        logger.warning("reaped stale runs=%s", reaped)
    return reaped
