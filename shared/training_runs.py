"""Fine-tuning runs as the web tier and beat see them: start, watch, cancel, list, settings.

Plain Python (no Flask, no Celery). Whoever starts a run passes an ``enqueue`` callable
that sends the pipeline for a run id and returns the task ids: web sends the chain by
task name with its Celery client, beat's auto-train with the worker's app
(``pipeline_sender`` builds either from an app object). The run is committed first and
enqueued second; the database's unique ``active_lock`` is the final word on "one active
run", so simultaneous starts make exactly one run.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import task_names
from shared.classifier.identity import infer_model_kind
from shared.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from shared.models import (
    ACTIVE_STATUSES,
    Category,
    FineTuningRun,
    TrainingExample,
    utcnow,
)
from shared.settings_store import get_all_settings, set_setting
from shared.training.lifecycle import finish_run, new_queued_run
from shared.training.readiness import check_readiness
from shared.training.results import metric
from shared.training_config import (
    ADAPTS,
    DEFAULT_SPLIT,
    EPOCH_RANGE,
    LEARNING_RATE_RANGE,
    LORA_RANKS,
    METHODS,
    TrainingConfig,
    adapted_blocks,
)

logger = logging.getLogger(__name__)

# What an admin may choose: the engine's own ranges and defaults (shared.training_config).
_ENGINE_DEFAULTS = TrainingConfig()
DEFAULT_TRAINING_CONFIG: dict[str, Any] = {
    "method": _ENGINE_DEFAULTS.method,
    "lora_r": _ENGINE_DEFAULTS.lora_r,
    "learning_rate": _ENGINE_DEFAULTS.learning_rate,
    "epochs": _ENGINE_DEFAULTS.epochs,
    "split": list(DEFAULT_SPLIT),
    "cross_validation": _ENGINE_DEFAULTS.cross_validation,
}
PIPELINE = (task_names.VALIDATE_DATA, task_names.TRAIN, task_names.EVALUATE)
MAX_MIN_TRAINING_EXAMPLES = 100_000

# Settings an admin edits on the settings page, with their types.
EDITABLE_SETTINGS: dict[str, type] = {
    "fine_tuning_enabled": bool,
    "min_training_examples": int,
    "auto_train": bool,
    "auto_deploy": bool,
}

Enqueue = Callable[[int], list[str]]


# --- config -----------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_training_config(body: object) -> dict[str, Any]:
    """The start request's config with defaults filled in; InvalidInput naming a bad field."""
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise InvalidInput("the body must be a JSON object of training options")
    unknown = sorted(set(body) - set(DEFAULT_TRAINING_CONFIG))
    if unknown:
        raise InvalidInput(
            f"unknown training option(s): {', '.join(unknown)}; "
            f"known: {', '.join(DEFAULT_TRAINING_CONFIG)}"
        )
    config = dict(DEFAULT_TRAINING_CONFIG)
    config.update(body)

    if config["method"] not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}, got {config['method']!r}")
    lora_r = config["lora_r"]
    if isinstance(lora_r, bool) or lora_r not in LORA_RANKS:
        raise InvalidInput(
            f"lora_r must be one of {', '.join(map(str, LORA_RANKS))}, got {lora_r!r}"
        )
    config["lora_r"] = int(lora_r)
    low, high = LEARNING_RATE_RANGE
    rate = config["learning_rate"]
    if not _is_number(rate) or not low <= rate <= high:
        raise InvalidInput(f"learning_rate must be a number from {low:g} to {high:g}, got {rate!r}")
    config["learning_rate"] = float(rate)
    low_epochs, high_epochs = EPOCH_RANGE
    epochs = config["epochs"]
    if not _is_number(epochs) or int(epochs) != epochs or not low_epochs <= epochs <= high_epochs:
        raise InvalidInput(
            f"epochs must be a whole number from {low_epochs} to {high_epochs}, got {epochs!r}"
        )
    config["epochs"] = int(epochs)
    config["split"] = _validate_split(config["split"])
    if not isinstance(config["cross_validation"], bool):
        raise InvalidInput(
            f"cross_validation must be true or false, got {config['cross_validation']!r}"
        )
    try:  # the worker builds the same TrainingConfig: refuse here what it would refuse
        TrainingConfig.from_dict(config)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    return config


def _validate_split(split: object) -> list[float]:
    if (
        not isinstance(split, list | tuple)
        or len(split) != 3
        or not all(_is_number(part) for part in split)
    ):
        raise InvalidInput(f"split must be three numbers (train, validation, test), got {split!r}")
    if any(part <= 0 for part in split):
        raise InvalidInput(f"every part of split must be above 0, got {list(split)!r}")
    if abs(sum(split) - 1.0) > 1e-6:
        raise InvalidInput(f"split must sum to 1, got {list(split)!r} (sum {sum(split):g})")
    return [float(part) for part in split]


# --- settings ---------------------------------------------------------------------------


def training_settings(session: Session) -> dict[str, Any]:
    """The settings the training pages show and edit."""
    values = get_all_settings(session)
    return {key: values[key] for key in EDITABLE_SETTINGS}


def update_training_settings(session: Session, body: object) -> dict[str, Any]:
    """Check every given setting, then store them all (the caller commits)."""
    if not isinstance(body, Mapping) or not body:
        raise InvalidInput(
            "the body must be a JSON object with one or more of: " + ", ".join(EDITABLE_SETTINGS)
        )
    unknown = sorted(set(body) - set(EDITABLE_SETTINGS))
    if unknown:
        raise InvalidInput(
            f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(EDITABLE_SETTINGS)}"
        )
    for key, value in body.items():
        if EDITABLE_SETTINGS[key] is bool and not isinstance(value, bool):
            raise InvalidInput(f"{key} must be true or false, got {value!r}")
        if EDITABLE_SETTINGS[key] is int and (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_MIN_TRAINING_EXAMPLES
        ):
            raise InvalidInput(
                f"{key} must be a whole number from 1 to {MAX_MIN_TRAINING_EXAMPLES}, got {value!r}"
            )
    for key, value in body.items():
        set_setting(session, key, value)
    session.flush()
    return training_settings(session)


# --- start ------------------------------------------------------------------------------


def active_run(session: Session) -> FineTuningRun | None:
    return session.scalar(select(FineTuningRun).where(FineTuningRun.status.in_(ACTIVE_STATUSES)))


def _training_snapshot(session: Session) -> tuple[list[int], list[dict[str, str]]]:
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
    if active_run(session) is not None:
        raise Conflict("a fine-tuning run is already active: wait for it or cancel it")
    example_ids, label_set = _training_snapshot(session)
    check_ready_to_train(session, example_ids, config["split"])
    run = new_queued_run(
        base_model=base_model,
        label_set=[category["name"] for category in label_set],
        training_config=config,
        data_snapshot={"example_ids": example_ids, "categories": label_set},
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
    run = session.get(FineTuningRun, run.id)
    run.celery_task_id = task_ids[0] if task_ids else None
    run.data_snapshot = {**(run.data_snapshot or {}), "task_ids": list(task_ids)}
    session.commit()
    return run


# Training time per example and epoch of an embedding lora run that adapts every block,
# relative to one that adapts the top block only (its frozen bottom runs once per text):
# used only when no completed run of the same kind exists (bench/README.md).
EVERY_BLOCK_COST = 4.0


def _adapts(run_or_config: Mapping[str, Any], kind: str, examples: int, categories: int) -> str:
    """What a run on ``examples`` training examples over ``categories`` categories adapts."""
    split = run_or_config.get("split") or DEFAULT_SPLIT
    per_category = examples * float(split[0]) / max(1, categories)
    return adapted_blocks(kind, str(run_or_config.get("method")), per_category)


def _examples_of(run: FineTuningRun) -> int:
    """All the examples a run took (train, validation and test), as a new run counts them;
    ``num_training_examples`` holds only its training split once the data was checked."""
    taken = (run.data_snapshot or {}).get("example_ids")
    return len(taken) if taken else int(run.num_training_examples or 0)


def _reference_adapts(run: FineTuningRun, kind: str) -> str:
    recorded = ((run.results or {}).get("training") or {}).get("adapted_blocks")
    if recorded in ADAPTS:
        return recorded
    categories = len((run.data_snapshot or {}).get("categories") or run.label_set or [])
    return _adapts(run.training_config or {}, kind, _examples_of(run), categories)


def estimate_run_duration(session: Session, options: object, *, base_model: str) -> dict[str, Any]:
    """How long a run with ``options`` should take on today's data, before it starts.

    Scaled from the latest completed run of the same method, cross-validation
    choice and base model, preferring one that adapted the same blocks (an
    embedding ``lora`` run adapts every block from 12 training texts per category
    on, which costs more per example): its training time by examples and by
    maximum epochs, the rest (data checks, evaluation) by examples. ``seconds``
    is None (with the reason in ``basis``) until such a run exists. InvalidInput
    for bad options, as for start-training.
    """
    config = validate_training_config(options)
    example_ids, label_set = _training_snapshot(session)
    examples = len(example_ids)
    kind = infer_model_kind(base_model)
    used = (
        session.scalar(
            select(func.count(func.distinct(TrainingExample.corrected_category))).where(
                TrainingExample.id.in_(example_ids)
            )
        )
        if example_ids
        else 0
    )
    adapts = _adapts(config, kind, examples, used or len(label_set))
    candidates = session.scalars(
        select(FineTuningRun)
        .where(
            FineTuningRun.status == "completed",
            FineTuningRun.base_model == base_model,
            FineTuningRun.started_at.is_not(None),
            FineTuningRun.completed_at.is_not(None),
            FineTuningRun.num_training_examples > 0,
        )
        .order_by(FineTuningRun.completed_at.desc(), FineTuningRun.id.desc())
        .limit(50)
    )
    same_method = [
        run
        for run in candidates
        if (run.training_config or {}).get("method") == config["method"]
        and bool((run.training_config or {}).get("cross_validation"))
        == bool(config["cross_validation"])
    ]
    reference = next(
        (run for run in same_method if _reference_adapts(run, kind) == adapts),
        same_method[0] if same_method else None,
    )
    if reference is None:
        return {
            "seconds": None,
            "num_examples": examples,
            "reference_run": None,
            "adapted_blocks": adapts,
            "basis": f"no completed {config['method']} run"
            + (" with cross-validation" if config["cross_validation"] else "")
            + " on this base model yet: the first one sets the estimate",
        }
    took = max(0.0, (reference.completed_at - reference.started_at).total_seconds())
    training = ((reference.results or {}).get("training") or {}).get("train_seconds")
    training = min(took, float(training)) if _is_number(training) else took
    reference_examples = _examples_of(reference)
    size = examples / reference_examples
    reference_epochs = int((reference.training_config or {}).get("epochs") or 10)
    epochs = config["epochs"] / reference_epochs
    reference_adapts = _reference_adapts(reference, kind)
    cost = 1.0
    note = ""
    if reference_adapts != adapts and {reference_adapts, adapts} == {"top block", "every block"}:
        cost = EVERY_BLOCK_COST if adapts == "every block" else 1 / EVERY_BLOCK_COST
        phrase = {"top block": "the top block", "every block": "every block"}
        note = (
            f"; LoRA adapted {phrase[reference_adapts]} of the encoder there and will adapt "
            f"{phrase[adapts]} here, so its training time per example is taken {cost:g} times"
        )
    seconds = training * size * epochs * cost + (took - training) * size
    return {
        "seconds": round(seconds, 1),
        "num_examples": examples,
        "adapted_blocks": adapts,
        "reference_run": {
            "run_id": reference.id,
            "num_examples": reference_examples,
            "seconds": round(took, 1),
            "epochs": reference_epochs,
            "adapted_blocks": reference_adapts,
        },
        "basis": (
            f"scaled from run {reference.id} ({reference_examples} examples, "
            f"up to {reference_epochs} epochs, {took:.0f} s){note}; "
            "early stopping can make it shorter"
        ),
    }


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
    task_ids = list((run.data_snapshot or {}).get("task_ids") or [])
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
    snapshot = run.data_snapshot or {}
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
        "num_examples": len(snapshot.get("example_ids") or []),
        "quality": snapshot.get("quality"),
        "timeline": snapshot.get("timeline") or [],
        "model_path": run.model_path,
        "is_active_model": run.is_active_model,
        "created_by": run.created_by,
    }


def run_summary(run: FineTuningRun) -> dict[str, Any]:
    """One row of ``GET /admin/api/runs``."""
    snapshot = run.data_snapshot or {}
    return {
        "run_id": run.id,
        "created_at": _iso(run.created_at),
        "status": run.status,
        "num_training_examples": run.num_training_examples,
        "accuracy": metric(run.results, "accuracy"),
        "baseline_accuracy": metric(run.results, "baseline_accuracy"),
        "meets_criteria": metric(run.results, "meets_criteria"),
        "is_active_model": run.is_active_model,
        "num_examples": len(snapshot.get("example_ids") or []) or run.num_training_examples,
        "macro_f1": metric(run.results, "macro_f1"),
        "completed_at": _iso(run.completed_at),
        "error": run.error,
        "method": (run.training_config or {}).get("method"),
        "model_path": run.model_path,
    }


def list_runs(session: Session, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first."""
    runs = session.scalars(
        select(FineTuningRun)
        .order_by(FineTuningRun.created_at.desc(), FineTuningRun.id.desc())
        .limit(limit)
    )
    return [run_summary(run) for run in runs]


# --- auto-train -------------------------------------------------------------------------


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
    if active_run(session) is not None:
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
