"""The three pipeline steps: validate_data, train, evaluate.

Each ``Step`` says which status it runs in and after which, and splits its work in
three: ``load`` (inside the claim transaction: plain data out of the run row),
``work`` (no session held: the engine), ``record`` (a new transaction). The lifecycle
that runs them is ``worker.pipeline.run_step``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.classifier.identity import infer_model_kind
from shared.deployment.deployed import deployed_run
from shared.model_store.layout import (
    METRICS_FILE,
    published_path,
    run_directory,
    staging_directory,
)
from shared.models import FineTuningRun, TrainingExample
from shared.training.results import EvaluationResult, TrainingResult
from shared.training.snapshot import RunSnapshot
from worker.progress import ProgressWriter

logger = logging.getLogger(__name__)


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
    # How long progress writes may fail in a row (a database outage) before the run fails.
    outage_patience_seconds: float = 60.0

    def model_kind(self, base_model: str) -> str:
        """The kind of ``base_model``: the configured one for the configured model."""
        if self.configured_model is not None and self.configured_model[0] == base_model:
            return self.configured_model[1]
        return infer_model_kind(base_model)

    def engine_config(self, chosen: dict[str, Any]) -> dict[str, Any]:
        """The admin's choices for the run plus this host's training settings."""
        return {**chosen, **self.training_overrides}

    def progress_writer(self) -> ProgressWriter:
        return ProgressWriter(
            self.run_id,
            self.sessions,
            self.status,
            self.progress_range,
            outage_patience_seconds=self.outage_patience_seconds,
        )


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
    evaluation = EvaluationResult.from_dict(output["metrics"])  # refuses one with no verdict
    run.results = {**(run.results or {}), **evaluation.to_dict()}
    run.improvement_over_baseline = evaluation.improvement_over_baseline
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
