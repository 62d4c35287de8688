"""One run lifecycle for every pipeline step (validate_data → train → evaluate).

The steps themselves are in ``worker.steps``, progress and heartbeat in
``worker.progress``; status changes go through ``shared.training.lifecycle``.

``run_step`` is the only way a step touches a run:

1. **claim** (one short transaction, row locked): the run must be in the step's
   ``previous`` status (fresh) or its own status (a redelivered message: the work is
   redone cleanly). A run that is already past the step, finished, or unknown makes the
   step a no-op, which is what makes ``acks_late`` redelivery safe. A run whose cancel
   was requested ends ``cancelled`` here.
2. **work** with no database session held: the step's inputs were loaded in (1), a
   heartbeat thread keeps ``heartbeat_at`` fresh, and training reports progress through a
   throttled ``ProgressWriter`` that also answers "was I cancelled?".
3. **record** (a new short transaction): only if the run is still in the step's status
   (the reaper or a cancel may have ended it meanwhile). The last step marks the
   examples used and completes the run.

Any exception ends the run ``failed`` with a readable ``error``; the traceback goes to
the worker log. A run never stays in a non-terminal status because of a step.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from shared.db import DatabaseOutage, retry_through_outage, session_scope
from shared.models import TERMINAL_STATUSES, FineTuningRun, utcnow
from shared.training.lifecycle import enter_step, finish_run
from shared.training.snapshot import RunSnapshot
from worker.progress import Heartbeat, heartbeat_interval
from worker.run_log import capture_run_log
from worker.steps import EVALUATE, STEPS, TRAIN, VALIDATE, Step, StepContext

logger = logging.getLogger(__name__)


# A failed run is recorded as soon as the database answers again, within this long.
FAILURE_WRITE_PATIENCE = 3600.0


class StepFailed(Exception):
    """Raised by a task after the run was marked failed, so Celery shows the failure."""


def _claim(
    sessions: sessionmaker[Session], run_id: int, step: Step, task_id: str | None
) -> tuple[str, dict[str, Any] | None]:
    """Check the run's state and move it to the step's status. ('run', inputs) to go on,
    or (outcome, None) when there is nothing to do."""
    with session_scope(sessions) as session:
        run = session.get(FineTuningRun, run_id, with_for_update=True)
        if run is None:
            logger.warning(
                "run=%s step=%s task=%s: no such run, nothing to do", run_id, step.name, task_id
            )
            return "unknown", None
        if run.status in TERMINAL_STATUSES:
            logger.info(
                "run=%s step=%s: run is already %s, skipping", run_id, step.name, run.status
            )
            return run.status, None
        if run.cancel_requested:
            finish_run(session, run_id, "cancelled")
            return "cancelled", None
        if run.status not in (step.previous, step.status):
            logger.info(
                "run=%s step=%s: run is %s, past this step, skipping", run_id, step.name, run.status
            )
            return "skipped", None
        if run.status == step.status and step.is_done(run):
            logger.info("run=%s step=%s: already done (redelivered), skipping", run_id, step.name)
            return "skipped", None
        if not _previous_done(run, step):
            finish_run(
                session, run_id, "failed", error=f"{step.name}: the previous step left no output"
            )
            return "failed", None
        redo = enter_step(run, step.status, step.stage, step.progress_range[0], task_id)
        inputs = step.load(session, run)
    logger.info(
        "run=%s step=%s task=%s status=%s redo=%s", run_id, step.name, task_id, step.status, redo
    )
    return "run", inputs


def _previous_done(run: FineTuningRun, step: Step) -> bool:
    previous = {"train": VALIDATE, "evaluate": TRAIN}.get(step.name)
    return previous is None or previous.is_done(run)


def _record(
    sessions: sessionmaker[Session], run_id: int, step: Step, output: dict[str, Any]
) -> str:
    with session_scope(sessions) as session:
        run = session.get(FineTuningRun, run_id, with_for_update=True)
        if run is None or run.status != step.status:
            status = "unknown" if run is None else run.status
            logger.info(
                "run=%s step=%s: run became %s meanwhile, not recording", run_id, step.name, status
            )
            return status
        if run.cancel_requested:
            finish_run(session, run_id, "cancelled")
            return "cancelled"
        step.record(session, run, output)
        run.progress = max(run.progress or 0.0, step.progress_range[1])
        run.heartbeat_at = utcnow()
        if step.completes_run:
            run.progress = 1.0
            finish_run(session, run_id, "completed")
            return "completed"
        run.stage = f"{step.name} done; waiting for the next step"
    return "done"


def _readable(error: BaseException) -> str:
    text = str(error).strip() or error.__class__.__name__
    return text if len(text) < 2000 else text[:2000] + "..."


def run_step(
    sessions: sessionmaker[Session],
    run_id: int,
    step: Step,
    **options: Any,
) -> dict[str, Any]:
    """Run one step of a run through the lifecycle; never leaves it half-done. What the
    step logs meanwhile (its thread, INFO and above) goes to the run's log too
    (``worker.run_log``). The options are ``_run_step``'s."""
    with capture_run_log(run_id, sessions):
        return _run_step(sessions, run_id, step, **options)


def _run_step(
    sessions: sessionmaker[Session],
    run_id: int,
    step: Step,
    *,
    models_dir: str,
    heartbeat_timeout_seconds: float,
    task_id: str | None = None,
    training_overrides: dict[str, Any] | None = None,
    configured_model: tuple[str, str] | None = None,
    outage_patience_seconds: float = 60.0,
) -> dict[str, Any]:
    """The step's lifecycle: claim, work, record.

    ``configured_model`` is (BASE_MODEL, BASE_MODEL_KIND) of this worker's config.
    Every write retries through a database outage of up to ``outage_patience_seconds``
    (claim and record are whole transactions, safe to repeat; progress is skipped
    meanwhile); past that the run ends ``failed``, written as soon as the database is back.
    Returns ``{"run_id", "step", "outcome", "error"}``; outcome is one of done,
    completed, cancelled, failed, skipped, unknown or a terminal status seen at entry.
    """
    from worker.fine_tuning.engine import TrainingCancelled

    patience = outage_patience_seconds

    def through_outage(transaction, what: str, wait: float = patience):
        return retry_through_outage(transaction, patience=wait, what=what)

    try:
        outcome, inputs = through_outage(
            lambda: _claim(sessions, run_id, step, task_id), f"starting {step.name}"
        )
    except DatabaseOutage as outage:
        error = f"{step.name} failed: {_describe(outage)}"

        def fail_unclaimed() -> None:
            with session_scope(sessions) as session:
                finish_run(
                    session, run_id, "failed", error=error, only_if=(step.previous, step.status)
                )

        through_outage(fail_unclaimed, "marking the run failed", wait=FAILURE_WRITE_PATIENCE)
        return {"run_id": run_id, "step": step.name, "outcome": "failed", "error": error}
    if outcome != "run":
        return {"run_id": run_id, "step": step.name, "outcome": outcome, "error": None}
    context = StepContext(
        run_id,
        models_dir,
        sessions,
        step.status,
        step.progress_range,
        training_overrides or {},
        configured_model,
        outage_patience_seconds=patience,
    )
    started = time.monotonic()
    try:
        with Heartbeat(
            run_id, sessions, step.status, heartbeat_interval(heartbeat_timeout_seconds)
        ):
            output = step.work(context, inputs or {})
        outcome = through_outage(
            lambda: _record(sessions, run_id, step, output), f"recording the {step.name} results"
        )
        error = None
    except TrainingCancelled:

        def cancel() -> bool:
            with session_scope(sessions) as session:
                return finish_run(session, run_id, "cancelled", only_if=(step.status,))

        ended = through_outage(cancel, "cancelling", wait=FAILURE_WRITE_PATIENCE)
        outcome, error = ("cancelled" if ended else "skipped"), None
    except Exception as exception:
        error = f"{step.name} failed: {_describe(exception)}"
        logger.exception("run=%s step=%s task=%s failed", run_id, step.name, task_id)

        def fail(cause: BaseException = exception) -> None:
            with session_scope(sessions) as session:
                if finish_run(session, run_id, "failed", error=error, only_if=(step.status,)):
                    _keep_quality_report(session, run_id, cause)

        try:  # as soon as the database is back, however long the outage
            through_outage(fail, "marking the run failed", wait=FAILURE_WRITE_PATIENCE)
        except Exception:  # the reaper will fail the run when its heartbeat stops
            logger.exception("run=%s could not be marked failed", run_id)
        outcome = "failed"
    logger.info(
        "run=%s step=%s task=%s outcome=%s seconds=%.1f",
        run_id, step.name, task_id, outcome, time.monotonic() - started,
    )  # fmt: skip
    return {"run_id": run_id, "step": step.name, "outcome": outcome, "error": error}


def _keep_quality_report(session: Session, run_id: int, error: BaseException) -> None:
    """A refused data check keeps its report on the run, for the details page."""
    report = getattr(error, "report", None)
    if isinstance(report, dict) and report:
        run = session.get(FineTuningRun, run_id)
        snapshot = RunSnapshot.from_dict(run.data_snapshot)
        run.data_snapshot = snapshot.with_changes(quality=report).to_dict()


def _describe(error: BaseException) -> str:
    if isinstance(error, DatabaseOutage):
        return f"{error}; the run stopped there: start it again"
    try:
        from worker.fine_tuning.engine import DataValidationError

        if isinstance(error, DataValidationError):
            return f"the training data cannot be used: {_readable(error)}"
    except ImportError:  # pragma: no cover - the engine is always installed on the worker
        pass
    if error.__class__.__name__ == "SoftTimeLimitExceeded":
        return "the task ran past its time limit (SORTLOOP_TRAINING_TIME_LIMIT)"
    return f"{error.__class__.__name__}: {_readable(error)}"


__all__ = ["EVALUATE", "STEPS", "TRAIN", "VALIDATE", "StepFailed", "run_step"]
