"""The on-disk format of a fine-tuned model, read by web and written by the worker.

A fine-tuned model is a directory (``MODELS_DIR/finetuned/run_<id>/``) holding:

- ``adapter_model.safetensors`` — LoRA tensors under peft's names
  (``base_model.model.<module>.lora_A.weight``) plus the method's small extras
  under ``sortloop_head.``: ``exemplars`` ``[n, dim]`` (embeddings of the labelled
  examples under the adapted encoder), ``exemplar_classes`` ``[n]`` (index into
  ``labels``), ``logit_scale``, ``temperature`` and ``description_weight`` for
  the embedding backend's earlier format; ``linear_weight`` ``[labels, dim]``,
  ``linear_bias`` ``[labels]``, ``linear_calibration`` (logit multiplier),
  ``zero_shot_slope`` and ``zero_shot_intercept`` for its calibrated logistic head
  (rows in the order of ``labels``; it takes precedence); ``middle_layer_index`` and
  ``middle_layer_weight`` when that head also reads a middle block's pooled output
  (``shared.classifier.embedding.MiddleLayer``; its rows are then twice as wide);
  ``token_bank`` ``[tokens, hidden]`` (fp16), ``token_bank_rows`` ``[tokens]`` (index
  into ``labels``) and ``token_weight`` when the head also matches a text's tokens with
  each category's (``shared.classifier.embedding.TokenBank``);
  ``params.<name>`` (replacement parameters, e.g. the NLI classification head) for the
  ``head`` method on NLI models.
- ``adapter_config.json`` — peft's LoRA config fields plus a ``sortloop`` block:
  format version, base model, kind, method, labels and their descriptions.

Safetensors only: nothing here ever unpickles.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
HEAD_PREFIX = "sortloop_head."
# The newest format this Sortloop reads. A model is written at the oldest format that
# holds it, so an earlier Sortloop still serves what it can: 1 for every model, 2 for a
# head that reads a middle block (an earlier Sortloop would score it wrongly: it refuses),
# 3 for a head with a token bank (an earlier Sortloop would ignore its word matches).
FORMAT_VERSION = 3
MIDDLE_LAYER_FORMAT = 2
TOKEN_BANK_FORMAT = 3
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


@dataclass(frozen=True)
class AdapterManifest:
    """The ``sortloop`` block of adapter_config.json: what the adapter was trained for."""

    base_model: str
    kind: str
    method: str
    labels: list[str]
    descriptions: dict[str, str] = field(default_factory=dict)
    hypothesis_template: str | None = None
    max_length: int = 128
    format_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterManifest:
        known = {name for name in cls.__dataclass_fields__}
        missing = {"base_model", "kind", "method", "labels"} - set(data)
        if missing:
            raise ValueError(f"adapter manifest lacks {sorted(missing)}")
        if int(data.get("format_version", 1)) > FORMAT_VERSION:
            raise ValueError(
                f"adapter format {data['format_version']} is newer than this Sortloop "
                f"understands ({FORMAT_VERSION}); upgrade Sortloop"
            )
        return cls(**{key: value for key, value in data.items() if key in known})


def read_adapter_config(adapter_dir: str | Path) -> tuple[dict[str, Any], AdapterManifest]:
    """Return (peft LoRA fields, manifest) from ``adapter_config.json``."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a Sortloop adapter directory")
    data = json.loads(path.read_text(encoding="utf-8"))
    if "sortloop" not in data:
        raise ValueError(f"{path} has no 'sortloop' block: not a Sortloop adapter")
    return data, AdapterManifest.from_dict(data["sortloop"])


def read_adapter_tensors(adapter_dir: str | Path) -> dict[str, Any]:
    """Load the adapter tensors (torch) from safetensors; never pickle."""
    from safetensors.torch import load_file

    path = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return load_file(str(path), device="cpu")


def split_tensors(tensors: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split adapter tensors into (LoRA tensors, head tensors without the prefix)."""
    lora = {key: value for key, value in tensors.items() if not key.startswith(HEAD_PREFIX)}
    head = {
        key[len(HEAD_PREFIX) :]: value
        for key, value in tensors.items()
        if key.startswith(HEAD_PREFIX)
    }
    return lora, head


def merge_lora_weights(model: Any, lora_tensors: dict[str, Any], scaling: float) -> int:
    """Fold LoRA deltas into ``model``'s linear weights in place; return modules merged.

    Merging (W += scaling * B @ A) gives the fine-tuned model at the base model's
    inference cost and keeps peft out of the web process.
    """
    import torch

    pairs: dict[str, dict[str, Any]] = {}
    for key, tensor in lora_tensors.items():
        match = _LORA_KEY.match(key)
        if match is None:
            raise ValueError(
                f"unexpected tensor {key!r} in adapter (only LoRA A/B weights allowed)"
            )
        pairs.setdefault(match["module"], {})[match["part"]] = tensor
    with torch.no_grad():
        for module_path, parts in pairs.items():
            if set(parts) != {"A", "B"}:
                raise ValueError(f"adapter has an incomplete LoRA pair for {module_path}")
            try:
                module = model.get_submodule(module_path)
            except AttributeError as error:
                raise ValueError(
                    f"adapter targets {module_path}, which the base model lacks"
                ) from error
            delta = (parts["B"].float() @ parts["A"].float()) * scaling
            if tuple(delta.shape) != tuple(module.weight.shape):
                raise ValueError(
                    f"adapter shape {tuple(delta.shape)} does not fit {module_path} "
                    f"{tuple(module.weight.shape)}: trained on another base model?"
                )
            module.weight += delta.to(device=module.weight.device, dtype=module.weight.dtype)
    return len(pairs)


_BLOCK_INDEX = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def untouched_bottom_layers(lora_tensors: dict[str, Any], head: dict[str, Any]) -> int:
    """How many bottom encoder blocks (``...layer.<i>...``) an adapter leaves as they were.

    0 when it changes anything outside numbered blocks (or replaces parameters),
    or when it has no LoRA tensors at all (nothing to share then: same model).
    """
    if not lora_tensors or any(key.startswith("params.") for key in head):
        return 0
    indices = []
    for key in lora_tensors:
        match = _BLOCK_INDEX.search(key)
        if match is None:
            return 0
        indices.append(int(match.group(1)))
    return min(indices)


def lora_scaling(peft_fields: dict[str, Any]) -> float:
    """The LoRA scaling factor peft would use (alpha / r, or alpha / sqrt(r) with rsLoRA)."""
    rank = int(peft_fields.get("r") or 8)
    alpha = float(peft_fields.get("lora_alpha") or rank)
    if peft_fields.get("use_rslora"):
        return alpha / rank**0.5
    return alpha / rank
