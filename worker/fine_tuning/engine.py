"""The fine-tuning engine, step by step, with plain JSON-ready data in and out.

Each step can be its own Celery task (``validate`` -> ``train_model`` ->
``evaluate_model`` -> ``publish_model``); ``sortloop train`` runs them in one
process. Examples are dicts ``{"id", "text", "label"}``; categories are
``CategorySpec`` or dicts ``{"name", "description"}``.

Recommended flow for a run ``run_id``::

    checked = validate(examples, split=config.split, seed=config.seed)
    train, val, test = pick(examples, checked["split"])           # by id
    staging = staging_directory(models_dir, run_id)
    info = train_model(train, val, config, base_model, categories, output_dir=staging)
    results = evaluate_model(staging, base_model, test, categories)
    publish_model(staging, models_dir, run_id)                     # atomic rename

Why one module of ~530 lines: it is the engine's whole public face (the steps above,
evaluation against the base model and the model in use, cross-validation,
``run_all``), and the learning engine is being reworked beside it (issue 19). Once
that settles, evaluation (``evaluate_model``, ``compare_with_model_in_use``,
``cross_validate``) moves to its own module.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

from shared.classifier import (
    CategorySpec,
    Classifier,
    ClassifierError,
    finetuned_from_base,
    infer_model_kind,
    load_base_classifier,
    model_identity,
    predictions_from_scores,
)
from shared.classifier.embedding import encode_both
from shared.model_store.layout import staging_directory
from shared.stats import mcnemar_exact_p_value
from shared.training.data_quality import normalize_text
from shared.training.results import TrainingResult
from shared.training_config import DEFAULT_SPLIT, TrainingConfig
from worker.fine_tuning import devices, export, metrics
from worker.fine_tuning import trainer as trainer_module
from worker.fine_tuning.data_validator import DataValidationError, validate
from worker.fine_tuning.trainer import ProgressCallback, TrainingCancelled

__all__ = [
    "DataValidationError",
    "TrainingCancelled",
    "evaluate_model",
    "examples_by_ids",
    "publish_model",
    "staging_directory",
    "train_model",
    "validate",
]

logger = logging.getLogger(__name__)


def as_categories(categories: Sequence[CategorySpec | dict[str, Any] | str]) -> list[CategorySpec]:
    """Accept CategorySpec, ``{"name", "description"}`` dicts or bare names."""
    result = []
    for category in categories:
        if isinstance(category, CategorySpec):
            result.append(category)
        elif isinstance(category, str):
            result.append(CategorySpec(category, category))
        else:
            result.append(
                CategorySpec(str(category["name"]), str(category.get("description") or ""))
            )
    if not result:
        raise ValueError("at least one category is needed")
    return result


def examples_by_ids(
    examples: Sequence[dict[str, Any]], ids: Sequence[Hashable]
) -> list[dict[str, Any]]:
    """The examples with the given ids, in the order of ``ids``."""
    index = {example["id"]: example for example in examples}
    return [index[example_id] for example_id in ids]


def publish_model(staging_dir: str | Path, models_dir: str | Path, run_id: int | str) -> str:
    """Atomically move the evaluated adapter to ``finetuned/run_<id>``; return its path."""
    path = str(export.publish(staging_dir, models_dir, run_id))
    logger.info("model published run=%s path=%s", run_id, path)
    return path


def _plain(example: dict[str, Any]) -> dict[str, Any]:
    return {"id": example.get("id"), "text": example["text"], "label": example["label"]}


def train_model(
    train: Sequence[dict[str, Any]],
    val: Sequence[dict[str, Any]],
    config: TrainingConfig | dict[str, Any],
    base_model: str,
    categories: Sequence[CategorySpec | dict[str, Any] | str],
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    output_dir: str | Path | None = None,
    kind: str | None = None,
    test: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train per ``config`` and write the adapter to ``output_dir`` (atomically).

    Returns ``shared.training.results.TrainingResult.to_dict()`` (``adapter_dir``,
    ``method``, ``kind``, ``train_seconds``, losses per epoch, ...): ``device``
    is where it trained (``cpu``/``cuda``, per ``config.device``) and
    ``peak_gpu_memory_mb`` the peak allocated GPU memory (None on CPU). GPU
    memory is released before this returns. ``test`` is only recorded in
    training_data.json.
    """
    if output_dir is None:
        raise ValueError("output_dir is required")
    config = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
    specs = as_categories(categories)
    resolved_kind = kind or infer_model_kind(base_model)
    started = time.perf_counter()
    if progress:
        progress("loading", 0, 0, 0, None, None)
    adapter, tokenizer = trainer_module.train(
        train, val, specs, base_model, resolved_kind, config, progress, should_cancel
    )
    training_data = {
        "train": [_plain(example) for example in train],
        "val": [_plain(example) for example in val],
        "test": [_plain(example) for example in test or []],
        "per_category": _count_labels([*train, *val, *(test or [])]),
        "config": config.to_dict(),
        "training": adapter.history,
        "categories": [{"name": c.name, "description": c.description} for c in specs],
    }
    if progress:
        progress("saving", 0, 0, adapter.history.get("best_epoch", 0), None, None)
    directory = export.write_adapter(adapter, output_dir, tokenizer, training_data)
    history = adapter.history
    _log_epochs(history)
    logger.info(
        "trained method=%s train=%d val=%d epochs_run=%s best_epoch=%s seconds=%.1f device=%s",
        config.method,
        len(train),
        len(val),
        history.get("epochs_run"),
        history.get("best_epoch"),
        time.perf_counter() - started,
        history.get("device", "cpu"),
    )
    return TrainingResult(
        adapter_dir=str(directory),
        method=config.method,
        kind=resolved_kind,
        base_model=model_identity(base_model),
        train_seconds=round(time.perf_counter() - started, 3),
        best_epoch=history.get("best_epoch"),
        epochs_run=history.get("epochs_run"),
        train_loss=tuple(history.get("train_loss", [])),
        val_loss=tuple(history.get("val_loss", [])),
        val_accuracy=tuple(history.get("val_accuracy", [])),
        start_val_loss=history.get("start_val_loss"),
        linear_head=history.get("linear_head"),
        label_issues=_named_issues(history.get("label_issues") or [], [*train, *val]),
        num_train=len(train),
        num_val=len(val),
        steps=history.get("steps"),
        adapted_blocks=history.get("adapted_blocks"),
        device=history.get("device", "cpu"),
        peak_gpu_memory_mb=history.get("peak_gpu_memory_mb"),
    ).to_dict()


def _named_issues(
    issues: Sequence[dict[str, Any]], examples: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The trainer's label issues (by row of train, then validation) with each text and,
    where the example has one, its id (a training example's, in a run): what an admin
    opens to check it."""
    named = []
    for issue in issues:
        example = examples[issue["row"]]
        found = {key: value for key, value in issue.items() if key != "row"}
        named.append({"id": example.get("id"), "text": example["text"], **found})
    return named


def _log_epochs(history: dict[str, Any]) -> None:
    """One line per epoch the trainer ran (every method and kind records the same
    history): what the run's log and ``sortloop train`` show."""

    def number(values: list[Any], index: int) -> str:
        return f"{values[index]:.4f}" if index < len(values) and values[index] is not None else "-"

    train_loss = list(history.get("train_loss") or [])
    val_loss = list(history.get("val_loss") or [])
    val_accuracy = list(history.get("val_accuracy") or [])
    for index in range(max(len(train_loss), len(val_loss))):
        logger.info(
            "epoch=%d train_loss=%s val_loss=%s val_accuracy=%s",
            index + 1, number(train_loss, index), number(val_loss, index),
            number(val_accuracy, index),
        )  # fmt: skip


def _count_labels(examples: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for example in examples:
        counts[example["label"]] = counts.get(example["label"], 0) + 1
    return counts


def _labels(predictions: list[Any]) -> list[str]:
    return [prediction.label for prediction in predictions]


def _predict(classifier: Classifier, texts: list[str], categories: list[CategorySpec]) -> list[str]:
    return [prediction.label for prediction in classifier.classify(texts, categories)]


def evaluate_model(
    adapter_dir: str | Path,
    base_model: str,
    test: Sequence[dict[str, Any]],
    categories: Sequence[CategorySpec | dict[str, Any] | str],
    *,
    base_classifier: Classifier | None = None,
    cross_validation: bool = False,
    cv_examples: Sequence[dict[str, Any]] | None = None,
    config: TrainingConfig | dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    write: bool = True,
    device: str | None = None,
    in_use: dict[str, Any] | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """Fine-tuned vs base model on the same test set, the deploy verdict, optional CV.

    The base model is loaded once and the adapter applied to a copy of it.
    ``base_classifier`` may be passed to reuse an already loaded base model.
    With ``cross_validation`` the method in ``config`` is retrained on stratified
    folds of ``cv_examples`` (k = 5, fewer when a category is smaller).
    Results are also written to ``metrics.json`` in ``adapter_dir`` unless
    ``write`` is False. ``device`` (auto/cpu/cuda; default ``config.device``,
    else auto) is where the models run when ``base_classifier`` is not given;
    GPU memory is released before this returns.

    ``in_use`` (``{"run_id", "version", "dir"}``) names a fine-tuned model in use
    that this one would replace: it is scored on the same test texts too, and
    ``results["in_use"]`` says how the two compare (``compare_with_model_in_use``).
    ``kind`` (embedding/nli) is the configured model kind; inferred when None.
    """
    specs = as_categories(categories)
    if not test:
        raise DataValidationError("the test set is empty: nothing to evaluate on")
    started = time.perf_counter()
    if progress:
        progress("evaluating", 0, 2, 0, None, None)
    if config is not None and not isinstance(config, TrainingConfig):
        config = TrainingConfig.from_dict(config)
    resolved_device = devices.resolve_device(device or (config.device if config else "auto"))
    try:
        results = _evaluate(
            adapter_dir,
            base_model,
            test,
            specs,
            base_classifier or load_base_classifier(base_model, kind, device=resolved_device),
            cross_validation=cross_validation,
            cv_examples=cv_examples,
            config=config,
            progress=progress,
            should_cancel=should_cancel,
            in_use=in_use,
        )
    finally:
        devices.free_device_memory(resolved_device)
    results["eval_seconds"] = round(time.perf_counter() - started, 3)
    results["eval_device"] = resolved_device
    logger.info(
        "evaluated test=%d accuracy=%.3f baseline_accuracy=%.3f macro_f1=%.3f "
        "meets_criteria=%s p_value=%.3g",
        len(test),
        results["accuracy"],
        results["baseline_accuracy"],
        results["macro_f1"],
        results["meets_criteria"],
        results["mcnemar_p_value"],
    )
    if write:
        export.write_metrics(
            adapter_dir, {k: v for k, v in results.items() if "predictions" not in k}
        )
    if progress:
        progress("evaluating", 2, 2, 0, None, 0.0)
    return results


def _evaluate(
    adapter_dir: str | Path,
    base_model: str,
    test: Sequence[dict[str, Any]],
    specs: list[CategorySpec],
    base: Classifier,
    *,
    cross_validation: bool,
    cv_examples: Sequence[dict[str, Any]] | None,
    config: TrainingConfig | None,
    progress: ProgressCallback | None,
    should_cancel: Callable[[], bool] | None,
    in_use: dict[str, Any] | None = None,
) -> dict[str, Any]:
    finetuned = finetuned_from_base(base, adapter_dir, version=Path(adapter_dir).name)
    texts = [example["text"] for example in test]
    truth = [example["label"] for example in test]
    labels = [spec.name for spec in specs]
    unscaled_scored = None
    if hasattr(base, "encode") and hasattr(finetuned, "encode"):
        # One encoding pass for both models when the encoder is frozen (method "head");
        # with LoRA on the top blocks, the bottom blocks run once for both.
        base_embeddings, tuned_embeddings = encode_both(base, finetuned, texts)
        base_scored = predictions_from_scores(
            base.score(texts, specs, base_embeddings).tolist(), specs
        )
        tuned_logits = finetuned.score(texts, specs, tuned_embeddings)
        tuned_scored = predictions_from_scores(tuned_logits.tolist(), specs)
        head = getattr(finetuned, "linear_head", None)
        if head is not None:
            # The same head without its fitted temperature: what calibration changed.
            unscaled_scored = predictions_from_scores(
                (tuned_logits / head.calibration).tolist(), specs
            )
    else:
        base_scored = base.classify(texts, specs)
        if progress:
            progress("evaluating", 1, 2, 0, None, None)
        tuned_scored = finetuned.classify(texts, specs)
    base_predictions, tuned_predictions = _labels(base_scored), _labels(tuned_scored)
    tuned = metrics.classification_metrics(truth, tuned_predictions, labels)
    baseline = metrics.classification_metrics(truth, base_predictions, labels)
    changes = metrics.discordant_counts(truth, tuned_predictions, base_predictions)
    verdict = metrics.deploy_verdict(tuned, baseline, changes)
    results: dict[str, Any] = {
        **{key: tuned[key] for key in tuned if key != "labels"},
        "labels": labels,
        "baseline_accuracy": baseline["accuracy"],
        "baseline_macro_f1": baseline["macro_f1"],
        "baseline_per_category_f1": baseline["per_category_f1"],
        "baseline_confusion_matrix": baseline["confusion_matrix"],
        # The verdict computes the gain; readers use shared.training.results.
        "improvement_over_baseline": verdict["accuracy_gain"],
        "mcnemar_p_value": verdict["p_value"],
        # Does "80% confident" mean right 8 times in 10? (expected calibration error)
        "calibration": metrics.calibration(truth, tuned_scored),
        "baseline_calibration": metrics.calibration(truth, base_scored),
        # The fine-tuned model's head before its temperature was fitted (None: no head).
        "calibration_before_scaling": (
            metrics.calibration(truth, unscaled_scored) if unscaled_scored else None
        ),
        "verdict": verdict,
        "meets_criteria": verdict["meets_criteria"],
        "num_test": len(test),
        "predictions": tuned_predictions,
        "baseline_predictions": base_predictions,
    }
    if in_use is not None:
        results["in_use"] = compare_with_model_in_use(
            base, in_use, texts, truth, tuned_predictions, specs
        )
    if cross_validation:
        if not cv_examples or config is None:
            raise ValueError("cross-validation needs cv_examples and config")
        results.update(
            cross_validate(
                cv_examples,
                config,
                base_model,
                specs,
                base,
                progress=progress,
                should_cancel=should_cancel,
            )
        )
    return results


def compare_with_model_in_use(
    base: Classifier,
    in_use: dict[str, Any],
    texts: list[str],
    truth: list[str],
    new_predictions: list[str],
    specs: list[CategorySpec],
) -> dict[str, Any]:
    """The fine-tuned model in use, scored on the new model's test texts.

    Texts the model in use trained on (its ``training_data.json``) are left out: it
    was fitted on them and would get them right by memory. Returns ``{"run_id",
    "version", "num_test", "accuracy", "new_accuracy", "macro_f1", "new_right",
    "in_use_right", "p_value", "new_is_better"}`` on those texts: ``new_right``
    counts texts only the new model gets right, ``in_use_right`` texts only the
    model in use gets right, and ``new_is_better`` is True when the new model's
    accuracy is higher. Auto-deploy replaces the model in use only then. When the
    model in use cannot be scored, ``error`` says why instead.
    """
    described = {"run_id": in_use.get("run_id"), "version": in_use.get("version")}
    seen = _texts_trained_on(Path(in_use["dir"]))
    kept = [index for index, text in enumerate(texts) if normalize_text(text) not in seen]
    if not kept:
        return {**described, "error": "the model in use trained on every one of these test texts"}
    texts = [texts[index] for index in kept]
    truth = [truth[index] for index in kept]
    new_predictions = [new_predictions[index] for index in kept]
    try:
        current = finetuned_from_base(base, in_use["dir"], version=str(in_use.get("version")))
        predicted = _predict(current, texts, specs)
    except (ClassifierError, OSError, ValueError) as error:
        return {**described, "error": str(error)}
    labels = [spec.name for spec in specs]
    scores = metrics.classification_metrics(truth, predicted, labels)
    new_right, in_use_right = metrics.discordant_counts(truth, new_predictions, predicted)
    return {
        **described,
        "num_test": len(texts),
        "accuracy": scores["accuracy"],
        "new_accuracy": metrics.classification_metrics(truth, new_predictions, labels)["accuracy"],
        "macro_f1": scores["macro_f1"],
        "new_right": new_right,
        "in_use_right": in_use_right,
        "p_value": mcnemar_exact_p_value(new_right, in_use_right),
        # The accuracies differ by exactly the texts only one of the two gets right.
        "new_is_better": new_right > in_use_right,
    }


def _texts_trained_on(adapter_dir: Path) -> set[str]:
    """Normalised texts of the train and validation examples an adapter recorded."""
    try:
        recorded = export.read_json(adapter_dir / export.TRAINING_DATA_FILE, {})
    except (OSError, ValueError):
        recorded = None
    if not isinstance(recorded, dict):
        return set()
    return {
        normalize_text(str(example.get("text") or ""))
        for part in ("train", "val")
        for example in recorded.get(part) or []
        if isinstance(example, dict)
    }


def cross_validate(
    examples: Sequence[dict[str, Any]],
    config: TrainingConfig | dict[str, Any],
    base_model: str,
    categories: Sequence[CategorySpec],
    base: Classifier,
    *,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Stratified k-fold accuracy of the configured method (mean ± std).

    k is ``config.cv_folds`` capped by the smallest category (at least 2). Each
    fold trains on the other folds without early stopping data and is scored
    on its own fold.
    """
    import random

    config = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
    by_label: dict[str, list[dict[str, Any]]] = {}
    for example in examples:
        by_label.setdefault(example["label"], []).append(example)
    folds_k = max(2, min(config.cv_folds, min(len(members) for members in by_label.values())))
    folds: list[list[dict[str, Any]]] = [[] for _ in range(folds_k)]
    for label in sorted(by_label):
        members = sorted(by_label[label], key=lambda example: str(example["id"]))
        random.Random(f"cv:{config.seed}:{label}").shuffle(members)
        for position, example in enumerate(members):
            folds[position % folds_k].append(example)
    accuracies = []
    labels = [category.name for category in categories]
    with tempfile.TemporaryDirectory(prefix="sortloop-cv-") as scratch:
        for fold_index, held_out in enumerate(folds):
            if progress:
                progress("cross_validation", fold_index, folds_k, 0, None, None)
            training = [
                example
                for index, fold in enumerate(folds)
                if index != fold_index
                for example in fold
            ]
            fold_dir = Path(scratch) / f"fold_{fold_index}"
            train_model(
                training,
                [],
                config,
                base_model,
                categories,
                None,
                should_cancel,
                fold_dir,
                base.kind,
            )
            classifier = finetuned_from_base(base, fold_dir, version=f"cv-{fold_index}")
            predicted = _predict(classifier, [e["text"] for e in held_out], list(categories))
            fold_metrics = metrics.classification_metrics(
                [e["label"] for e in held_out], predicted, labels
            )
            accuracies.append(fold_metrics["accuracy"])
            shutil.rmtree(fold_dir, ignore_errors=True)
    summary = metrics.summarize_folds(accuracies)
    summary["cv_fold_accuracies"] = accuracies
    return summary


def run_all(
    examples: Sequence[dict[str, Any]],
    categories: Sequence[CategorySpec | dict[str, Any] | str],
    base_model: str,
    config: TrainingConfig,
    output_dir: str | Path,
    *,
    test: Sequence[dict[str, Any]] | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """Validate, split, train, evaluate in one process (what ``sortloop train`` does).

    With ``test`` given, ``examples`` are split into train and validation only
    (the validation share keeps its proportion) and ``test`` is the test set.
    """
    specs = as_categories(categories)
    started = time.perf_counter()
    if test is not None:
        train_share, val_share, _ = config.split
        fractions = (
            train_share / (train_share + val_share),
            val_share / (train_share + val_share),
            0.0,
        )
    else:
        fractions = config.split
    checked = validate(examples, fractions, config.seed, [spec.name for spec in specs])
    train_set = examples_by_ids(examples, checked["split"]["train"])
    val_set = examples_by_ids(examples, checked["split"]["val"])
    test_set = (
        list(test) if test is not None else examples_by_ids(examples, checked["split"]["test"])
    )
    if not test_set:
        raise DataValidationError(
            "no examples left for the test set; add more examples or pass a separate test file"
        )
    info = train_model(
        train_set,
        val_set,
        config,
        base_model,
        specs,
        progress,
        should_cancel,
        output_dir,
        kind,
        test=test_set,
    )
    results = evaluate_model(
        info["adapter_dir"],
        base_model,
        test_set,
        specs,
        cross_validation=config.cross_validation,
        cv_examples=[*train_set, *val_set],
        config=config,
        progress=progress,
        should_cancel=should_cancel,
        kind=kind,
    )
    results.update(
        train_seconds=info["train_seconds"],
        num_train=len(train_set),
        num_val=len(val_set),
        total_seconds=round(time.perf_counter() - started, 3),
        quality=checked["report"],
        training=info,
    )
    return results


DEFAULT_SPLIT_FRACTIONS = DEFAULT_SPLIT
