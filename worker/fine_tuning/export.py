"""Write a trained adapter to disk atomically, and read it back.

The layout of a run directory and its file names belong to
``shared.model_store.layout``; this module writes and publishes one.

Every write goes to a temporary directory (or file) on the same volume and is
moved into place with ``os.rename``/``os.replace``: a reader never sees a
half-written adapter.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from shared.classifier import Classifier, load_finetuned_classifier
from shared.classifier.artifact import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterManifest,
    read_adapter_config,
)
from shared.model_store.layout import (
    METRICS_FILE,
    MODEL_CARD_FILE,
    TRAINING_DATA_FILE,
    run_directory,
)
from worker.fine_tuning.trainer import TrainedAdapter

logger = logging.getLogger(__name__)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(
        json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )


def _replace_file(path: Path, text: str) -> None:
    """Atomically replace one file (temp file in the same directory, then os.replace)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)


def write_adapter(
    adapter: TrainedAdapter,
    output_dir: str | Path,
    tokenizer: Any = None,
    training_data: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write everything into ``output_dir`` atomically; refuse to overwrite an existing one."""
    from safetensors.torch import save_file

    target = Path(output_dir)
    if target.exists():
        raise FileExistsError(f"{target} already exists; adapters are never overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        save_file(
            {name: tensor.contiguous() for name, tensor in adapter.tensors.items()},
            str(staging / ADAPTER_WEIGHTS),
            metadata={"format": "pt", "sortloop_method": adapter.manifest.method},
        )
        config = dict(adapter.peft_fields)
        config["sortloop"] = adapter.manifest.to_dict()
        _write_json(staging / ADAPTER_CONFIG, config)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(staging))
        _write_json(staging / TRAINING_DATA_FILE, training_data or {})
        if metrics is not None:
            _write_json(staging / METRICS_FILE, metrics)
        (staging / MODEL_CARD_FILE).write_text(
            model_card(adapter.manifest, adapter.history, training_data or {}, metrics),
            encoding="utf-8",
        )
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("adapter written path=%s method=%s", target, adapter.manifest.method)
    return target


def write_metrics(adapter_dir: str | Path, metrics: dict[str, Any]) -> None:
    """Add (or replace) metrics.json and refresh the model card, each file atomically."""
    directory = Path(adapter_dir)
    _, manifest = read_adapter_config(directory)
    training_data = read_json(directory / TRAINING_DATA_FILE, {})
    history = training_data.get("training", {}) if isinstance(training_data, dict) else {}
    _replace_file(
        directory / METRICS_FILE, json.dumps(metrics, indent=2, sort_keys=True, default=str) + "\n"
    )
    _replace_file(
        directory / MODEL_CARD_FILE, model_card(manifest, history, training_data, metrics)
    )


def publish(staging_dir: str | Path, models_dir: str | Path, run_id: int | str) -> Path:
    """Move a finished adapter directory to ``finetuned/run_<id>`` with one rename."""
    target = run_directory(models_dir, run_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    os.rename(staging_dir, target)
    return target


def read_json(path: Path, default: Any = None) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default


def read_manifest(adapter_dir: str | Path) -> AdapterManifest:
    """Base model, kind, method and labels of an exported adapter."""
    return read_adapter_config(adapter_dir)[1]


def load_adapter(
    adapter_dir: str | Path, base_model: str, version: str | None = None
) -> Classifier:
    """Load an exported adapter as a classifier (the same path the web tier uses)."""
    directory = Path(adapter_dir)
    return load_finetuned_classifier(base_model, directory, version=version or directory.name)


def model_card(
    manifest: AdapterManifest,
    history: dict[str, Any],
    training_data: dict[str, Any],
    metrics: dict[str, Any] | None,
) -> str:
    """A short README.md describing the model, its data and its results."""
    counts = training_data.get("per_category") or {}
    lines = [
        "# Sortloop fine-tuned classifier",
        "",
        f"- Base model: `{manifest.base_model}` ({manifest.kind})",
        f"- Method: `{manifest.method}`",
        f"- Categories ({len(manifest.labels)}): "
        + ", ".join(f"`{label}`" for label in manifest.labels),
        "",
        "## Training data",
        "",
    ]
    if counts:
        lines += ["| category | examples |", "| --- | --- |"]
        lines += [f"| {name} | {count} |" for name, count in sorted(counts.items())]
    sizes = {key: len(training_data.get(key) or []) for key in ("train", "val", "test")}
    lines += [
        "",
        f"Split: {sizes['train']} train / {sizes['val']} validation / {sizes['test']} test.",
        "",
    ]
    if history:
        lines += [
            "## Training",
            "",
            f"Best epoch {history.get('best_epoch')} of {history.get('epochs_run')}; "
            f"{history.get('train_seconds')} s.",
        ]
        adapted = {"top block": "the top block", "every block": "every block"}
        if history.get("adapted_blocks") in adapted:
            lines.append(f"LoRA adapts {adapted[history['adapted_blocks']]} of the model.")
        if history.get("best_epoch") == 0 and history.get("epochs_run"):
            lines.append(
                "Epoch 0 is the start: the scorer fitted on the frozen base model. No adapter "
                "epoch beat it on the validation set, so the adapter is kept at zero and "
                "this model scores like method head."
            )
        head = history.get("linear_head") or {}
        if head:
            if head.get("descriptions_as_examples", True):
                examples = "each category's description counts as one more example of it"
                if head.get("description_facets"):
                    examples += (
                        ", and each part of a description that lists them (split at commas "
                        "and 'and') as another: on texts each fold did not see, the head did "
                        f"better so (cross-fitted loss {head.get('loss_with_facets')} against "
                        f"{head.get('loss_with_descriptions')})"
                    )
            else:
                examples = (
                    "the categories' descriptions are not among its examples: on texts each "
                    "fold did not see, the head did better without them (cross-fitted loss "
                    f"{head.get('loss_without_descriptions')} against "
                    f"{head.get('loss_with_descriptions')}), so they may describe their "
                    "categories poorly; a category with fewer than 2 labelled texts keeps its "
                    "own"
                )
            lines.append(
                f"It scores with a logistic head fitted on every labelled text ({examples}), "
                f"its confidence calibrated by a temperature of {head.get('temperature')} "
                f"fitted on {head.get('calibration_folds')}-fold cross-fitted scores."
            )
            middle = head.get("middle_layer")
            if middle:
                lines.append(
                    f"The head reads the encoder's block {middle['block']} beside its last "
                    f"layer (mean-pooled, weight {middle['weight']}): on texts each fold did "
                    f"not see it did better so (cross-fitted loss "
                    f"{head.get('loss_with_middle_layer')} against "
                    f"{head.get('loss_last_layer_only')} with the last layer alone). Sortloop "
                    "before this format (2) cannot serve it."
                )
            if head.get("token_weight"):
                lines.append(
                    "It also matches a text word by word with each category's labelled "
                    f"texts (each token's best match, weight {head['token_weight']}): on texts "
                    "each fold did not see it did better so (cross-fitted loss "
                    f"{head.get('loss_with_token_match')} against "
                    f"{head.get('cross_fitted_loss')} without). Sortloop before this format (3) "
                    "cannot serve it."
                )
            issues = history.get("label_issues") or []
            if issues:
                lines.append(
                    f"Fitted without each, it doubted {len(issues)} of its labelled texts' "
                    "labels (another category at least ten times as likely; left in "
                    "training): the run's results list them as label_issues."
                )
            if head.get("uncapped_calibration"):
                lines.append(
                    "The adapter trained on those texts, which makes them look easier than "
                    "new ones, so the temperature is the frozen base model's (the tuned "
                    f"model's own, {round(1 / head['uncapped_calibration'], 4)}, would be "
                    "more sure of itself)."
                )
        lines.append("")
    if metrics:
        lines += ["## Evaluation (held-out test set)", ""]
        for key in ("accuracy", "macro_f1", "baseline_accuracy", "baseline_macro_f1"):
            if key in metrics:
                lines.append(f"- {key}: {metrics[key]:.4f}")
        for key, model in (
            ("calibration", "this model"),
            ("calibration_before_scaling", "this model before its temperature"),
            ("baseline_calibration", "base model"),
        ):
            if isinstance(metrics.get(key), dict):
                lines.append(f"- calibration ({model}): {calibration_summary(metrics[key])}")
        verdict = metrics.get("verdict") or {}
        if verdict:
            lines.append(f"- meets deploy criteria: {verdict.get('meets_criteria')}")
            lines += [f"  - {reason}" for reason in verdict.get("reasons", [])]
        lines.append("")
    lines += [
        "## Use",
        "",
        "Load with `shared.classifier.load_finetuned_classifier(base_model, this_dir, version)`.",
        "Weights are safetensors only.",
        "",
    ]
    return "\n".join(lines)


def calibration_summary(calibration: dict[str, Any]) -> str:
    """One line on how far confidences are from how often the model is right."""
    gap = float(calibration.get("overconfidence") or 0.0)
    leaning = "overconfident" if gap > 0 else "underconfident"
    return (
        f"mean confidence {float(calibration.get('mean_confidence') or 0):.3f}, "
        f"{abs(gap) * 100:.1f} points {leaning}; expected calibration error "
        f"{float(calibration.get('ece') or 0):.3f}"
    )
