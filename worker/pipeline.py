"""One run lifecycle for every pipeline step (validate_data → train → evaluate).

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
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.classifier.identity import infer_model_kind
from shared.db import session_scope
from shared.deployment.deployed import deployed_run
from shared.model_store.layout import (
    METRICS_FILE,
    published_path,
    run_directory,
    staging_directory,
)
from shared.models import TERMINAL_STATUSES, FineTuningRun, TrainingExample, utcnow
from shared.training.lifecycle import enter_step, finish_run
from shared.training.results import TrainingResult, improvement_over_baseline
from shared.training.snapshot import RunSnapshot

logger = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL = 0.75  # seconds between progress writes to the run row
LOSS_CURVE_MAX_POINTS = 500
# What the admin reads for each engine stage.
STAGE_TEXT = {
    "loading": "loading the base model",
    "training": "training",
    "saving": "saving the adapter",
    "evaluating": "evaluating the new and the base model on the test set",
    "cross_validation": "cross-validation",
}


class StepFailed(Exception):
    """Raised by a task after the run was marked failed, so Celery shows the failure."""


# --- progress and heartbeat -------------------------------------------------------------


class ProgressWriter:
    """The trainer's progress callback: writes stage, progress, epoch, loss, ETA and the
    heartbeat to the run row at most every ``interval`` seconds, and keeps what it
    learns about cancellation for ``should_cancel``.

    The write is conditional on the run still being in ``status``: when another process
    ended the run (cancel, reaper) the next check answers "cancel".
    """

    def __init__(
        self,
        run_id: int,
        sessions: sessionmaker[Session],
        status: str,
        progress_range: tuple[float, float],
        interval: float = PROGRESS_WRITE_INTERVAL,
    ) -> None:
        self.run_id = run_id
        self.sessions = sessions
        self.status = status
        self.low, self.high = progress_range
        self.interval = interval
        self.loss_curve: list[dict[str, float]] = []
        self._last_write = 0.0
        self._cancelled = False
        self._progress = self.low

    def __call__(
        self,
        stage: str,
        step: int,
        total_steps: int,
        epoch: int | float | None,
        loss: float | None,
        eta_seconds: float | None,
    ) -> None:
        if loss is not None and step > 0:
            self.loss_curve.append({"step": step, "epoch": epoch or 0, "loss": float(loss)})
            if len(self.loss_curve) > LOSS_CURVE_MAX_POINTS:
                self.loss_curve = self.loss_curve[::2]
        finished = total_steps > 0 and step >= total_steps
        if not finished and time.monotonic() - self._last_write < self.interval:
            return
        fraction = step / total_steps if total_steps else 0.0
        text = STAGE_TEXT.get(stage, stage)
        if total_steps:
            text += f": step {step} of {total_steps}" + (f", epoch {epoch}" if epoch else "")
        # Cross-validation restarts its step count: the bar never goes backwards.
        self._progress = max(
            self._progress, self.low + (self.high - self.low) * min(1.0, max(0.0, fraction))
        )
        self.write(
            stage=text[:200],
            progress=self._progress,
            epoch=float(epoch) if epoch is not None else None,
            loss=float(loss) if loss is not None else None,
            eta_seconds=float(eta_seconds) if eta_seconds is not None else None,
        )

    def write(self, **values: Any) -> None:
        values["heartbeat_at"] = utcnow()
        values = {key: value for key, value in values.items() if value is not None}
        with session_scope(self.sessions) as session:
            cancel_requested = session.scalar(
                update(FineTuningRun)
                .where(FineTuningRun.id == self.run_id, FineTuningRun.status == self.status)
                .values(**values)
                .returning(FineTuningRun.cancel_requested)
            )
        self._last_write = time.monotonic()
        self._cancelled = cancel_requested is None or bool(cancel_requested)

    def should_cancel(self) -> bool:
        """True once a cancel was requested or the run left this step's status."""
        if not self._cancelled and time.monotonic() - self._last_write >= self.interval:
            self.write()
        return self._cancelled


class Heartbeat:
    """A daemon thread that refreshes ``heartbeat_at`` while a step works, so the reaper
    can tell a slow step (model loading, evaluation) from a dead worker."""

    def __init__(self, run_id: int, sessions: sessionmaker[Session], status: str, every: float):
        self.run_id, self.sessions, self.status, self.every = run_id, sessions, status, every
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-run-{run_id}", daemon=True
        )

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with session_scope(self.sessions) as session:
                    session.execute(
                        update(FineTuningRun)
                        .where(FineTuningRun.id == self.run_id, FineTuningRun.status == self.status)
                        .values(heartbeat_at=utcnow())
                    )
            except Exception as error:  # a missed beat is not fatal; the next one may work
                logger.warning("run=%s heartbeat failed: %s", self.run_id, error)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def heartbeat_interval(heartbeat_timeout_seconds: float) -> float:
    """Beat four times per timeout, but at least every 10 s and at most twice a second."""
    return max(0.5, min(10.0, heartbeat_timeout_seconds / 4))


# --- steps ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepContext:
    """What a step's work may use: no session, only ids, paths and settings."""

    run_id: int
    models_dir: str
    sessions: sessionmaker[Session]
    status: str
    progress_range: tuple[float, float]
    # The worker host's training settings (device, token budget, accumulation).
    training_overrides: dict[str, Any] = field(default_factory=dict)
    # The configured (BASE_MODEL, BASE_MODEL_KIND): training and evaluation use that
    # kind for that model instead of inferring it again.
    configured_model: tuple[str, str] | None = None

    def model_kind(self, base_model: str) -> str:
        """The kind of ``base_model``: the configured one for the configured model."""
        if self.configured_model is not None and self.configured_model[0] == base_model:
            return self.configured_model[1]
        return infer_model_kind(base_model)

    def engine_config(self, chosen: dict[str, Any]) -> dict[str, Any]:
        """The admin's choices for the run plus this host's training settings."""
        return {**chosen, **self.training_overrides}

    def progress_writer(self) -> ProgressWriter:
        return ProgressWriter(self.run_id, self.sessions, self.status, self.progress_range)


@dataclass(frozen=True)
class Step:
    """One pipeline step. ``load`` runs in the claim transaction and returns plain data;
    ``work`` runs with no session; ``record`` stores the output in a new transaction."""

    name: str
    previous: str
    status: str
    stage: str
    progress_range: tuple[float, float]
    load: Callable[[Session, FineTuningRun], dict[str, Any]]
    work: Callable[[StepContext, dict[str, Any]], dict[str, Any]]
    record: Callable[[Session, FineTuningRun, dict[str, Any]], None]
    is_done: Callable[[FineTuningRun], bool]
    completes_run: bool = False


def _examples(session: Session, ids: list[int]) -> list[dict[str, Any]]:
    """The examples with these ids as the engine wants them (deleted ones are skipped)."""
    if not ids:
        return []
    rows = session.execute(
        select(TrainingExample.id, TrainingExample.message, TrainingExample.corrected_category)
        .where(TrainingExample.id.in_(ids))
        .order_by(TrainingExample.id)
    ).all()
    return [{"id": row.id, "text": row.message, "label": row.corrected_category} for row in rows]


def _snapshot(run: FineTuningRun) -> RunSnapshot:
    return RunSnapshot.from_dict(run.data_snapshot)


def _categories(run: FineTuningRun) -> list[dict[str, str]]:
    return list(_snapshot(run).categories)


def _engine_config(run: FineTuningRun) -> dict[str, Any]:
    """The admin's choices as the engine's TrainingConfig fields."""
    return {
        key: value
        for key, value in (run.training_config or {}).items()
        if key in ("method", "lora_r", "learning_rate", "epochs", "split", "cross_validation")
    }


# validate_data


def _load_validate(session: Session, run: FineTuningRun) -> dict[str, Any]:
    labels = {item["name"] for item in _categories(run)}
    examples = _examples(session, list(_snapshot(run).example_ids))
    return {
        "examples": [example for example in examples if example["label"] in labels],
        "categories": sorted(labels),
        "split": (run.training_config or {}).get("split") or [0.7, 0.15, 0.15],
    }


def _work_validate(context: StepContext, inputs: dict[str, Any]) -> dict[str, Any]:
    from worker.fine_tuning.engine import validate

    return validate(inputs["examples"], inputs["split"], categories=inputs["categories"])


def _record_validate(session: Session, run: FineTuningRun, output: dict[str, Any]) -> None:
    split = output["split"]
    run.data_snapshot = (
        _snapshot(run)
        .with_changes(
            split=split,
            quality=output.get("report"),
            excluded=output.get("excluded"),
            per_category=output.get("per_category"),
        )
        .to_dict()
    )
    run.num_training_examples = len(split["train"])
    run.num_validation_examples = len(split["val"])
    run.num_test_examples = len(split["test"])


def _validated(run: FineTuningRun) -> bool:
    return _snapshot(run).validated


# train


def _load_train(session: Session, run: FineTuningRun) -> dict[str, Any]:
    split = _snapshot(run).split or {}
    return {
        "train": _examples(session, split["train"]),
        "val": _examples(session, split["val"]),
        "test": _examples(session, split["test"]),
        "categories": _categories(run),
        "config": _engine_config(run),
        "base_model": run.base_model,
    }


def _work_train(context: StepContext, inputs: dict[str, Any]) -> dict[str, Any]:
    from worker.fine_tuning.engine import train_model

    staging = staging_directory(context.models_dir, context.run_id)
    shutil.rmtree(staging, ignore_errors=True)  # a redelivered train starts clean
    staging.parent.mkdir(parents=True, exist_ok=True)
    progress = context.progress_writer()
    info = train_model(
        inputs["train"],
        inputs["val"],
        context.engine_config(inputs["config"]),
        inputs["base_model"],
        inputs["categories"],
        progress=progress,
        should_cancel=progress.should_cancel,
        output_dir=staging,
        kind=context.model_kind(inputs["base_model"]),
        test=inputs["test"],
    )
    return {"training": info, "loss_curve": progress.loss_curve}


def _record_train(session: Session, run: FineTuningRun, output: dict[str, Any]) -> None:
    training = TrainingResult.from_dict(output["training"])  # refuses a result without its adapter
    run.results = {"training": training.to_dict(), "loss_curve": output["loss_curve"]}
    run.data_snapshot = _snapshot(run).with_changes(staging_dir=training.adapter_dir).to_dict()


def _trained(run: FineTuningRun) -> bool:
    staging = _snapshot(run).staging_dir
    return bool(staging) and Path(staging).is_dir() and "training" in (run.results or {})


# evaluate

# Per-text predictions are not kept on the run row: the metrics are.
_BULKY_RESULT_KEYS = ("predictions", "baseline_predictions")


def _load_evaluate(session: Session, run: FineTuningRun) -> dict[str, Any]:
    snapshot = _snapshot(run)
    split = snapshot.split or {}
    return {
        "test": _examples(session, split["test"]),
        "train_and_val": _examples(session, [*split["train"], *split["val"]]),
        "categories": _categories(run),
        "base_model": run.base_model,
        "staging_dir": snapshot.staging_dir,
        "config": _engine_config(run),
        "in_use": _model_in_use(session, run),
    }


def _model_in_use(session: Session, run: FineTuningRun) -> dict[str, Any] | None:
    """The fine-tuned model in use, when there is one this run could replace: the
    evaluation scores it on the same test texts, and auto-deploy needs it beaten."""
    current = deployed_run(session)
    if current is None or current.id == run.id or current.base_model != run.base_model:
        return None
    return {"run_id": current.id, "version": current.version, "model_path": current.model_path}


def _work_evaluate(context: StepContext, inputs: dict[str, Any]) -> dict[str, Any]:
    from worker.fine_tuning.engine import TrainingCancelled, evaluate_model, publish_model
    from worker.fine_tuning.export import read_json

    published = run_directory(context.models_dir, context.run_id)
    if published.is_dir():  # an earlier delivery published it and died before recording
        metrics = read_json(published / METRICS_FILE)
        if metrics:
            return {"metrics": metrics, "model_path": str(published)}
        shutil.rmtree(published)
    progress = context.progress_writer()
    in_use = inputs.get("in_use")
    if in_use is not None:
        directory = published_path(in_use["model_path"], in_use["run_id"], context.models_dir)
        in_use = {**in_use, "dir": str(directory)}
    metrics = evaluate_model(
        inputs["staging_dir"],
        inputs["base_model"],
        inputs["test"],
        inputs["categories"],
        cross_validation=bool(inputs["config"].get("cross_validation")),
        cv_examples=inputs["train_and_val"],
        config=context.engine_config(inputs["config"]),
        progress=progress,
        should_cancel=progress.should_cancel,
        in_use=in_use,
        kind=context.model_kind(inputs["base_model"]),
    )
    if progress.should_cancel():
        raise TrainingCancelled("evaluation was cancelled")
    metrics = {key: value for key, value in metrics.items() if key not in _BULKY_RESULT_KEYS}
    model_path = publish_model(inputs["staging_dir"], context.models_dir, context.run_id)
    return {"metrics": metrics, "model_path": model_path}


def _record_evaluate(session: Session, run: FineTuningRun, output: dict[str, Any]) -> None:
    metrics = output["metrics"]
    run.results = {**(run.results or {}), **metrics}
    run.improvement_over_baseline = improvement_over_baseline(metrics)
    run.model_path = output["model_path"]
    used = _snapshot(run).used_example_ids()
    if used:
        session.execute(
            update(TrainingExample)
            .where(TrainingExample.id.in_(used))
            .values(used_in_training=True, training_run_id=run.id)
        )


def _never_done(_run: FineTuningRun) -> bool:
    return False


VALIDATE = Step(
    name="validate_data",
    previous="queued",
    status="preparing",
    stage="checking and splitting the training data",
    progress_range=(0.02, 0.1),
    load=_load_validate,
    work=_work_validate,
    record=_record_validate,
    is_done=_validated,
)
TRAIN = Step(
    name="train",
    previous="preparing",
    status="training",
    stage="loading the base model",
    progress_range=(0.1, 0.85),
    load=_load_train,
    work=_work_train,
    record=_record_train,
    is_done=_trained,
)
EVALUATE = Step(
    name="evaluate",
    previous="training",
    status="evaluating",
    stage="evaluating against the base model on the test set",
    progress_range=(0.85, 1.0),
    load=_load_evaluate,
    work=_work_evaluate,
    record=_record_evaluate,
    is_done=_never_done,
    completes_run=True,
)
STEPS = {step.name: step for step in (VALIDATE, TRAIN, EVALUATE)}


# --- the lifecycle ----------------------------------------------------------------------


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
    *,
    models_dir: str,
    heartbeat_timeout_seconds: float,
    task_id: str | None = None,
    training_overrides: dict[str, Any] | None = None,
    configured_model: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Run one step of a run through the lifecycle; never leaves it half-done.

    ``configured_model`` is (BASE_MODEL, BASE_MODEL_KIND) of this worker's config.
    Returns ``{"run_id", "step", "outcome", "error"}``; outcome is one of done,
    completed, cancelled, failed, skipped, unknown or a terminal status seen at entry.
    """
    from worker.fine_tuning.engine import TrainingCancelled

    outcome, inputs = _claim(sessions, run_id, step, task_id)
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
    )
    started = time.monotonic()
    try:
        with Heartbeat(
            run_id, sessions, step.status, heartbeat_interval(heartbeat_timeout_seconds)
        ):
            output = step.work(context, inputs or {})
        outcome = _record(sessions, run_id, step, output)
        error = None
    except TrainingCancelled:
        with session_scope(sessions) as session:
            ended = finish_run(session, run_id, "cancelled", only_if=(step.status,))
        outcome, error = ("cancelled" if ended else "skipped"), None
    except Exception as exception:
        error = f"{step.name} failed: {_describe(exception)}"
        logger.exception("run=%s step=%s task=%s failed", run_id, step.name, task_id)
        try:
            with session_scope(sessions) as session:
                if finish_run(session, run_id, "failed", error=error, only_if=(step.status,)):
                    _keep_quality_report(session, run_id, exception)
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
        run.data_snapshot = _snapshot(run).with_changes(quality=report).to_dict()


def _describe(error: BaseException) -> str:
    try:
        from worker.fine_tuning.engine import DataValidationError

        if isinstance(error, DataValidationError):
            return f"the training data cannot be used: {_readable(error)}"
    except ImportError:  # pragma: no cover - the engine is always installed on the worker
        pass
    if error.__class__.__name__ == "SoftTimeLimitExceeded":
        return "the task ran past its time limit (SORTLOOP_TRAINING_TIME_LIMIT)"
    return f"{error.__class__.__name__}: {_readable(error)}"
