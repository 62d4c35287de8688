"""Build small but real fine-tuned model directories and ZIP archives for tests.

``write_adapter_directory`` writes the engine's published layout for the packaged
MiniLM (embedding backend, ``head`` method): labelled exemplar embeddings with their
class indices and a logit scale in safetensors, and an adapter_config.json with the
``sortloop`` manifest. It loads through ``shared.classifier.load_finetuned_classifier``
like a trained one.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as save_safetensors

from shared.classifier.artifact import ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_PREFIX

EMBEDDING_DIM = 384  # all-MiniLM-L6-v2
PACKAGED_BASE_MODEL = "all-MiniLM-L6-v2"


def adapter_config(
    labels: list[str], base_model: str = PACKAGED_BASE_MODEL, kind: str = "embedding"
) -> dict[str, Any]:
    return {
        "peft_type": None,
        "base_model_name_or_path": base_model,
        "sortloop": {
            "base_model": base_model,
            "kind": kind,
            "method": "head",
            "labels": list(labels),
            "descriptions": {},
            "max_length": 64,
            "format_version": 1,
        },
    }


def adapter_weights(labels: list[str], seed: int = 0, per_label: int = 2) -> bytes:
    """Random unit-length exemplars, ``per_label`` for each label, and a logit scale."""
    generator = np.random.default_rng(seed)
    exemplars = generator.normal(size=(len(labels) * per_label, EMBEDDING_DIM))
    exemplars /= np.linalg.norm(exemplars, axis=1, keepdims=True)
    classes = np.repeat(np.arange(len(labels), dtype=np.int64), per_label)
    return save_safetensors(
        {
            f"{HEAD_PREFIX}exemplars": exemplars.astype(np.float32),
            f"{HEAD_PREFIX}exemplar_classes": classes,
            f"{HEAD_PREFIX}logit_scale": np.array(np.log(20.0), dtype=np.float32),
        },
        metadata={"format": "pt"},
    )


def archive_files(
    labels: list[str], base_model: str = PACKAGED_BASE_MODEL, seed: int = 0
) -> dict[str, bytes]:
    """The members of a valid exported archive."""
    metrics = {"accuracy": 0.9, "baseline_accuracy": 0.6, "meets_criteria": True}
    return {
        ADAPTER_WEIGHTS: adapter_weights(labels, seed),
        ADAPTER_CONFIG: json.dumps(adapter_config(labels, base_model)).encode(),
        "metrics.json": json.dumps(metrics).encode(),
        "training_data.json": json.dumps({"train": [], "val": [], "test": []}).encode(),
        "README.md": b"# Sortloop fine-tuned classifier\n",
    }


def write_adapter_directory(
    path: Path, labels: list[str], metrics: dict[str, Any] | None = None, seed: int = 0
) -> Path:
    """A published run directory as the engine writes it."""
    path.mkdir(parents=True, exist_ok=True)
    for name, data in archive_files(labels, seed=seed).items():
        (path / name).write_bytes(data)
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
