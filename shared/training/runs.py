"""Fine-tuning runs as the web tier and beat see them: start, watch, cancel, list.

Plain Python (no Flask, no Celery). Whoever starts a run passes an ``enqueue`` callable
that sends the pipeline for a run id and returns the task ids: web sends the chain by
task name with its Celery client, beat's auto-train with the worker's app
(``pipeline_sender`` builds either from an app object). The run is committed first and
enqueued second; the database's unique ``active_lock`` is the final word on "one active
run", so simultaneous starts make exactly one run.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import task_names
from shared.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from shared.models import (
    ACTIVE_STATUSES,
    Category,
    FineTuningRun,
    TrainingExample,
)
from shared.settings_store import get_all_settings
from shared.training.lifecycle import finish_run, new_queued_run
from shared.training.options import validate_training_config
from shared.training.readiness import check_readiness
from shared.training.results import metric
from shared.training.snapshot import RunSnapshot
from shared.training_config import (
    DEFAULT_SPLIT,
)

logger = logging.getLogger(__name__)

PIPELINE = (task_names.VALIDATE_DATA, task_names.TRAIN, task_names.EVALUATE)
Enqueue = Callable[[int], list[str]]

# --- start ------------------------------------------------------------------------------


def running_run(session: Session) -> FineTuningRun | None:
    """The run in progress (queued, preparing, training or evaluating), if any."""
    return session.scalar(select(FineTuningRun).where(FineTuningRun.status.in_(ACTIVE_STATUSES)))


def training_snapshot(session: Session) -> tuple[list[int], list[dict[str, str]]]:
    """Ids of the examples a run will use and the categories (name, description) it learns.

    The categories are the active ones plus any inactive category that still has examples;
    an example whose label is no category at all is left out.
    """
    categories = {category.name: category for category in session.scalars(select(Category))}
    rows = session.execute(
        select(TrainingExample.id, TrainingExample.corrected_category).order_by(TrainingExample.id)
    ).all()
    example_ids = [row.id for row in rows if row.corrected_category in categories]
    used_labels = {row.corrected_category for row in rows if row.corrected_category in categories}
    label_set = [
        {"name": name, "description": category.description or ""}
        for name, category in sorted(categories.items())
        if category.active or name in used_labels
    ]
    return example_ids, label_set


def check_ready_to_train(
    session: Session, example_ids: list[int], split: Sequence[float] = DEFAULT_SPLIT
) -> None:
    """Settings and data allow a run with this train/validation/test ``split``:
    InvalidInput with the reason otherwise (``shared.training.readiness``, the rule the
    dashboard and the worker's data check apply too)."""
    settings = get_all_settings(session)
    if not settings["fine_tuning_enabled"]:
        raise InvalidInput("fine-tuning is disabled in the settings")
    rows = session.execute(
        select(
            TrainingExample.id, TrainingExample.message, TrainingExample.corrected_category
        ).where(TrainingExample.id.in_(example_ids))
    ).all()
    readiness = check_readiness(
        ((row.id, row.message, row.corrected_category) for row in rows),
        split=split,
        minimum=int(settings["min_training_examples"]),
    )
    reason = readiness.reason()
    if reason is not None:
        raise InvalidInput(reason)


def start_training_run(
    session: Session,
    options: object,
    *,
    base_model: str,
    enqueue: Enqueue,
    created_by: str | None = None,
) -> FineTuningRun:
    """Validate, create the ``queued`` run, commit it, then enqueue its pipeline.

    InvalidInput: bad options, fine-tuning disabled, too few or unusable examples.
    Conflict: a run is already active. ServiceUnavailable: the broker refused the chain
    (the run is then ``failed``, so nothing is left active).
    """
    config = validate_training_config(options)
    if running_run(session) is not None:
        raise Conflict("a fine-tuning run is already active: wait for it or cancel it")
    example_ids, label_set = training_snapshot(session)
    check_ready_to_train(session, example_ids, config["split"])
    run = new_queued_run(
        base_model=base_model,
        label_set=[category["name"] for category in label_set],
        training_config=config,
        data_snapshot=RunSnapshot(example_ids=tuple(example_ids), categories=tuple(label_set)),
        num_training_examples=len(example_ids),
        created_by=created_by,
    )
    session.add(run)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("a fine-tuning run is already active: wait for it or cancel it") from None
    logger.info("run=%s status=queued examples=%d by=%s", run.id, len(example_ids), created_by)

    try:
        task_ids = enqueue(run.id)
    except Exception as error:
        logger.error("run=%s enqueue failed: %s", run.id, error)
        session.rollback()
        finish_run(session, run.id, "failed", error=f"broker unreachable: {error}")
        session.commit()
        raise ServiceUnavailable(
            "the task queue is unreachable, so training cannot start; try again later"
        ) from None
    # A fast worker may already have moved the run on (its timeline gained "preparing"):
    # lock the row and read it afresh, so the task ids are added to what is there now.
    run = session.get(FineTuningRun, run.id, with_for_update=True, populate_existing=True)
    run.celery_task_id = run.celery_task_id or (task_ids[0] if task_ids else None)
    run.data_snapshot = (
        RunSnapshot.from_dict(run.data_snapshot).with_changes(task_ids=tuple(task_ids)).to_dict()
    )
    session.commit()
    return run


def pipeline_sender(celery_app: Any, publish_retries: int = 1) -> Enqueue:
    """An ``enqueue`` that sends validate_data → train → evaluate for a run by task name.

    Each step takes only the run id (immutable signatures), so an operator sees it in
    Flower and every step reloads what it needs from the run row.
    """

    def enqueue(run_id: int) -> list[str]:
        steps = [
            celery_app.signature(name, args=[run_id], immutable=True).set(
                task_id=str(uuid.uuid4()), queue=task_names.TRAINING_QUEUE
            )
            for name in PIPELINE
        ]
        workflow = steps[0] | steps[1] | steps[2]
        # ignore_result: sending must not wait on the result backend (a dead Redis would
        # hold the request for its 20 reconnect retries); the run row is the result.
        workflow.apply_async(
            ignore_result=True,
            retry=publish_retries > 0,
            retry_policy={
                "max_retries": publish_retries,
                "interval_start": 0,
                "interval_step": 0.5,
                "interval_max": 1,
            },
        )
        return [step.id for step in steps]

    return enqueue


# --- finish, cancel ---------------------------------------------------------------------


def cancel_training_run(
    session: Session, run_id: int, revoke: Callable[[list[str]], None] | None = None
) -> FineTuningRun:
    """Cancel a run: a queued one ends ``cancelled`` now; a running one gets the flag its
    training loop checks within seconds. Its queued tasks are revoked when possible.
    Commits."""
    run = session.get(FineTuningRun, run_id)
    if run is None:
        raise NotFound(f"fine-tuning run {run_id} does not exist")
    if not run.is_active:
        raise Conflict(f"run {run_id} is already {run.status}; only an active run can be cancelled")
    task_ids = list(RunSnapshot.from_dict(run.data_snapshot).task_ids)
    session.execute(
        update(FineTuningRun)
        .where(FineTuningRun.id == run_id, FineTuningRun.status.in_(ACTIVE_STATUSES))
        .values(cancel_requested=True)
    )
    ended_now = finish_run(session, run_id, "cancelled", only_if=("queued",))
    session.commit()
    if revoke is not None and task_ids:
        try:
            revoke(task_ids)
        except Exception as error:  # the flag alone stops the run; revoking only saves work
            logger.warning("run=%s revoke failed: %s", run_id, error)
    logger.info("run=%s cancel requested ended_now=%s", run_id, ended_now)
    session.refresh(run)
    return run


# --- reading ----------------------------------------------------------------------------


def get_run(session: Session, run_id: int) -> FineTuningRun:
    run = session.get(FineTuningRun, run_id)
    if run is None:
        raise NotFound(f"fine-tuning run {run_id} does not exist")
    return run


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def run_status(run: FineTuningRun) -> dict[str, Any]:
    """``GET /admin/api/training-status/<id>``: the contract's fields, then extras."""
    snapshot = RunSnapshot.from_dict(run.data_snapshot)
    return {
        "run_id": run.id,
        "status": run.status,
        "stage": run.stage,
        "progress": run.progress,
        "epoch": run.epoch,
        "loss": run.loss,
        "eta_seconds": run.eta_seconds,
        "error": run.error,
        "results": run.results,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "completed_at": _iso(run.completed_at),
        "heartbeat_at": _iso(run.heartbeat_at),
        "cancel_requested": run.cancel_requested,
        "is_active": run.is_active,
        "training_config": run.training_config,
        "base_model": run.base_model,
        "label_set": run.label_set,
        "num_training_examples": run.num_training_examples,
        "num_validation_examples": run.num_validation_examples,
        "num_test_examples": run.num_test_examples,
        "num_examples": len(snapshot.example_ids),
        "quality": snapshot.quality,
        "timeline": list(snapshot.timeline),
        "model_path": run.model_path,
        "is_active_model": run.is_active_model,
        "created_by": run.created_by,
    }


def run_summary(run: FineTuningRun) -> dict[str, Any]:
    """One row of ``GET /admin/api/runs``."""
    snapshot = RunSnapshot.from_dict(run.data_snapshot)
    return {
        "run_id": run.id,
        "created_at": _iso(run.created_at),
        "status": run.status,
        "num_training_examples": run.num_training_examples,
        "accuracy": metric(run.results, "accuracy"),
        "baseline_accuracy": metric(run.results, "baseline_accuracy"),
        "meets_criteria": metric(run.results, "meets_criteria"),
        "is_active_model": run.is_active_model,
        "improvement_over_baseline": metric(run.results, "improvement_over_baseline"),
        "num_examples": len(snapshot.example_ids) or run.num_training_examples,
        "macro_f1": metric(run.results, "macro_f1"),
        "completed_at": _iso(run.completed_at),
        "error": run.error,
        "method": (run.training_config or {}).get("method"),
        "model_path": run.model_path,
        # Training texts whose labels the run's model doubts (its details page lists them).
        "labels_to_check": len(
            (((run.results or {}).get("training") or {}).get("label_issues")) or []
        ),
    }


def list_runs(session: Session, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first."""
    runs = session.scalars(
        select(FineTuningRun)
        .order_by(FineTuningRun.created_at.desc(), FineTuningRun.id.desc())
        .limit(limit)
    )
    return [run_summary(run) for run in runs]
