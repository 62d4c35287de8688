"""Checks that a model folder or archive holds what Sortloop can load, shared by the
ZIP import and by deploy: safetensors headers that parse (never unpickled), the
"sortloop" manifest of adapter_config.json, and compatibility with this installation
(base model, kind, categories)."""

from __future__ import annotations

import json
import logging
import math
import struct
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.classifier.artifact import ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterManifest
from shared.classifier.base import MODEL_KINDS
from shared.classifier.identity import base_model_label, same_base_model
from shared.config import Config
from shared.model_store.layout import (
    REQUIRED_FILES,
)
from shared.models import Category

logger = logging.getLogger(__name__)

MAX_SAFETENSORS_HEADER_BYTES = 10 * 1024 * 1024
SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def parse_safetensors_header(data: bytes) -> dict[str, Any]:
    """Validate a whole safetensors file's layout without loading any tensor; return its header."""
    return read_safetensors_header(data, len(data))


def read_safetensors_header(prefix: bytes, total_size: int) -> dict[str, Any]:
    """Validate a safetensors header (``prefix``: the file's first bytes) against the file size.

    The format is an 8-byte little-endian header length, a JSON header naming each
    tensor's dtype, shape and byte range, then the raw bytes. Nothing here can execute code.
    """
    if len(prefix) < 8 or total_size < 8:
        raise ValueError("adapter_model.safetensors is too short to be a safetensors file")
    (header_length,) = struct.unpack("<Q", prefix[:8])
    if header_length > MAX_SAFETENSORS_HEADER_BYTES or 8 + header_length > total_size:
        raise ValueError("adapter_model.safetensors has an impossible header length")
    if len(prefix) < 8 + header_length:
        raise ValueError("adapter_model.safetensors is truncated")
    try:
        header = json.loads(prefix[8 : 8 + header_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"adapter_model.safetensors header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise ValueError("adapter_model.safetensors header is not a JSON object")
    buffer_length = total_size - 8 - header_length
    tensors = {name: spec for name, spec in header.items() if name != "__metadata__"}
    if not tensors:
        raise ValueError("adapter_model.safetensors holds no tensors")
    covered = 0
    for name, spec in tensors.items():
        if not isinstance(spec, dict):
            raise ValueError(f"adapter_model.safetensors: tensor {name!r}: malformed entry")
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPE_BYTES:
            raise ValueError(f"adapter_model.safetensors: tensor {name!r}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(size, int) and size >= 0 for size in shape
        ):
            raise ValueError(f"adapter_model.safetensors: tensor {name!r}: malformed shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(offset, int) for offset in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= buffer_length
        ):
            raise ValueError(
                f"adapter_model.safetensors: tensor {name!r}: byte range outside the file"
            )
        if offsets[1] - offsets[0] != math.prod(shape) * SAFETENSORS_DTYPE_BYTES[dtype]:
            raise ValueError(
                f"adapter_model.safetensors: tensor {name!r}: byte range does not match dtype and shape"
            )
        covered += offsets[1] - offsets[0]
    if covered != buffer_length:
        raise ValueError("adapter_model.safetensors has bytes no tensor accounts for")
    return header


def parse_manifest(config_bytes: bytes) -> AdapterManifest:
    """The ``sortloop`` manifest of an adapter_config.json, or ValueError saying what is wrong."""
    try:
        data = json.loads(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"adapter_config.json is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sortloop"), dict):
        raise ValueError("adapter_config.json has no 'sortloop' block: not a Sortloop adapter")
    try:
        manifest = AdapterManifest.from_dict(data["sortloop"])
    except TypeError as error:
        raise ValueError(f"adapter_config.json manifest is malformed: {error}") from None
    if manifest.kind not in MODEL_KINDS:
        raise ValueError(f"adapter is for an unknown model kind {manifest.kind!r}")
    labels = manifest.labels
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(label, str) and label for label in labels)
        or len(set(labels)) != len(labels)
    ):
        raise ValueError("adapter_config.json must list its categories once each")
    return manifest


def check_compatible(
    manifest: AdapterManifest, config: Config, active_categories: set[str]
) -> None:
    """Refuse an adapter made for another base model, model kind or category set.

    Categories: every category the adapter was trained on must be an active category
    here (a subset). Active categories the adapter never saw are scored zero-shot by the
    adapted encoder, so an installation may have more categories than the adapter; an
    adapter label with no category here would have no meaning, so that is refused.
    """
    if not same_base_model(manifest.base_model, config.base_model):
        raise ValueError(
            f"adapter was trained on base model {manifest.base_model!r}, but this "
            f"installation uses {base_model_label(config.base_model)!r}"
        )
    if manifest.kind != config.base_model_kind:
        raise ValueError(
            f"adapter is for a {manifest.kind!r} model, but this installation's base model "
            f"is {config.base_model_kind!r}"
        )
    unknown = sorted(set(manifest.labels) - active_categories)
    if unknown:
        raise ValueError(
            f"adapter knows categories that are not active here: {unknown}; add them (or "
            "activate them) first, or import a model trained on this installation's categories"
        )


def active_category_names(session: Session) -> set[str]:
    return set(session.scalars(select(Category.name).where(Category.active.is_(True))))


def verify_adapter_directory(path: Path, config: Config, active_categories: set[str]) -> None:
    """Cheap structural check of a published adapter: files present, parsable, compatible.

    Reads the config and the safetensors header only; loading the weights onto the base
    model is each web process's job (and a failure there keeps the old model).
    """
    if not path.is_dir():
        raise ValueError(f"adapter directory {path} does not exist")
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise ValueError(f"adapter directory {path} lacks {name}")
    manifest = parse_manifest((path / ADAPTER_CONFIG).read_bytes())
    weights = path / ADAPTER_WEIGHTS
    with weights.open("rb") as stream:
        prefix = stream.read(8)
        if len(prefix) == 8:
            (length,) = struct.unpack("<Q", prefix)
            prefix += stream.read(min(length, MAX_SAFETENSORS_HEADER_BYTES))
    read_safetensors_header(prefix, weights.stat().st_size)
    check_compatible(manifest, config, active_categories)
