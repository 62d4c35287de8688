"""The one writer of a run's status.

A run is created ``queued`` by start-training (``new_queued_run``) or ``imported`` by
an archive import (``new_imported_run``); the worker moves it through ``preparing``,
``training`` and ``evaluating`` (``enter_step``); it ends ``completed``, ``failed``
(with its error) or ``cancelled`` (``finish_run``), whoever ends it: the pipeline, a
cancel, a broker that refused the chain, or the reaper. Every change appends to the
run's timeline. tests/unit/test_lifecycle.py checks that no other module assigns a
status.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from shared.models import ACTIVE_STATUSES, FineTuningRun, utcnow
from shared.notifications.events import emit_event
from shared.training.run_log import ALREADY_RECORDED, log_run_event
from shared.training.snapshot import RunSnapshot

logger = logging.getLogger(__name__)

FINISHED_STAGE = {"failed": "failed", "cancelled": "cancelled", "completed": "completed"}


def append_timeline(snapshot: dict[str, Any] | None, status: str) -> dict[str, Any]:
    """A copy of ``data_snapshot`` with one more (status, time) entry in its timeline."""
    return RunSnapshot.from_dict(snapshot).with_status(status, utcnow()).to_dict()


def new_queued_run(
    *,
    base_model: str,
    label_set: list[str],
    training_config: dict[str, Any],
    data_snapshot: RunSnapshot,
    num_training_examples: int,
    created_by: str | None,
) -> FineTuningRun:
    """A run waiting for a training worker (the caller adds and commits it)."""
    return FineTuningRun(
        status="queued",
        stage="waiting for a training worker",
        base_model=base_model,
        label_set=label_set,
        training_config=training_config,
        num_training_examples=num_training_examples,
        data_snapshot=data_snapshot.with_status("queued", utcnow()).to_dict(),
        created_by=created_by,
    )


def new_imported_run(*, stage: str, **fields: Any) -> FineTuningRun:
    """A run made from an imported archive: finished on arrival, deployable."""
    now = utcnow()
    fields.setdefault("started_at", now)
    fields.setdefault("completed_at", now)
    return FineTuningRun(status="imported", stage=stage, progress=1.0, **fields)


def enter_step(
    run: FineTuningRun, status: str, stage: str, progress_floor: float, task_id: str | None
) -> bool:
    """Move a claimed (row-locked) run into a pipeline step's status. True when the run
    was already in it (a redelivered message redoes the step); the timeline records
    only real moves."""
    redo = run.status == status
    run.status = status
    run.stage = stage
    run.progress = max(run.progress or 0.0, progress_floor)
    run.heartbeat_at = utcnow()
    run.eta_seconds = None
    run.started_at = run.started_at or utcnow()
    run.celery_task_id = task_id or run.celery_task_id
    if not redo:
        run.data_snapshot = append_timeline(run.data_snapshot, status)
    return redo


def finish_run(
    session: Session,
    run_id: int,
    status: str,
    *,
    error: str | None = None,
    only_if: Iterable[str] = ACTIVE_STATUSES,
) -> bool:
    """Move an active run to a terminal status (the caller commits). False if it was not
    in one of ``only_if`` any more (someone else ended it first)."""
    run = session.get(FineTuningRun, run_id, with_for_update=True, populate_existing=True)
    if run is None or run.status not in tuple(only_if):
        return False
    run.status = status
    run.completed_at = utcnow()
    run.eta_seconds = None
    run.stage = FINISHED_STAGE[status]
    if error is not None:
        run.error = error[:4000]
    run.data_snapshot = append_timeline(run.data_snapshot, status)
    ending = f"run {status}" + (f": {error}" if error else "")
    log_run_event(session, run_id, "ERROR" if status == "failed" else "INFO", __name__, ending)
    emit_event(session, f"run.{status}", run=run)  # webhooks and email hear of it
    session.flush()
    logger.info(
        "run=%s status=%s error=%s", run_id, status, error or "", extra={ALREADY_RECORDED: True}
    )
    return True
