"""The models volume's layout: the only module that spells a path or a file name on it.

    MODELS_DIR/
      finetuned/run_<id>/          a published run (the engine's rename, or an import)
        adapter_model.safetensors  LoRA tensors + the method's head tensors
        adapter_config.json        peft LoRA fields + the "sortloop" manifest
        tokenizer files            the base model's tokenizer
        metrics.json               evaluation results
        training_data.json         the examples and the split used
        README.md                  the model card
      staging/run_<id>/            a run's adapter before it is evaluated and published
      onnx/encoder-<hash>.onnx     an encoder exported for ONNX Runtime (a cache: any
                                   process may delete it, the next load writes it again)

Plain Python: the engine, the pipeline, the registry and the archive all import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from shared.classifier.artifact import ADAPTER_CONFIG, ADAPTER_WEIGHTS

METRICS_FILE = "metrics.json"
TRAINING_DATA_FILE = "training_data.json"
MODEL_CARD_FILE = "README.md"
FINETUNED_SUBDIR = "finetuned"
STAGING_SUBDIR = "staging"
ONNX_SUBDIR = "onnx"

REQUIRED_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG)
OPTIONAL_FILES = (METRICS_FILE, TRAINING_DATA_FILE, MODEL_CARD_FILE)
# What an exported ZIP holds, flat (the tokenizer comes with the base model).
ARCHIVE_FILES = REQUIRED_FILES + OPTIONAL_FILES


class PublishedRun(Protocol):
    """What a run row offers to find its folder (``FineTuningRun`` has both)."""

    id: int
    model_path: str | None


def finetuned_root(models_dir: str | Path) -> Path:
    """Where published runs live: ``<models_dir>/finetuned``."""
    return Path(models_dir) / FINETUNED_SUBDIR


def run_directory(models_dir: str | Path, run_id: int | str) -> Path:
    """Where run ``run_id`` is published: ``<models_dir>/finetuned/run_<id>``."""
    return finetuned_root(models_dir) / f"run_{run_id}"


def onnx_cache_directory(models_dir: str | Path) -> Path:
    """Where exported encoders are cached: ``<models_dir>/onnx`` (shared by processes)."""
    return Path(models_dir) / ONNX_SUBDIR


def staging_directory(models_dir: str | Path, run_id: int | str) -> Path:
    """Where a run's adapter is written before it is published (same volume: one rename)."""
    return Path(models_dir) / STAGING_SUBDIR / f"run_{run_id}"


def published_path(model_path: str | None, run_id: int, models_dir: str | Path) -> Path:
    """A run's published folder from its recorded ``model_path`` (relative to the volume
    or absolute) and id; ``run_directory`` when it recorded none."""
    if model_path:
        path = Path(model_path)
        return path if path.is_absolute() else Path(models_dir) / path
    return run_directory(models_dir, run_id)


def run_model_path(run: PublishedRun, models_dir: str | Path) -> Path:
    """The run's published folder (``published_path`` of its row)."""
    return published_path(run.model_path, run.id, models_dir)
