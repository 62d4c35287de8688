"""Fine-tuned models as ZIP files: export a published run, import an archive safely.

An archive holds, flat at its top level, exactly the files of a published run that
another installation needs::

    adapter_model.safetensors   required: the adapter tensors (safetensors, never pickle)
    adapter_config.json         required: peft fields + the "sortloop" manifest
    metrics.json                optional: evaluation results
    training_data.json          optional: the examples and the split used
    README.md                   optional: the model card

Import checks the whole archive before anything is written (size, member count,
uncompressed total and compression ratio, names, links, encryption, pickled weights,
JSON and safetensors that parse, base model, kind and categories compatible with this
installation), then writes into a temporary directory on the volume, proves the adapter
loads, and renames it to ``finetuned/run_<id>/`` in the same step that commits the new
``imported`` run and its DeploymentEvent. Any failure raises InvalidInput and leaves no
run, no file and no event behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import shutil
import stat
import struct
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.classifier.artifact import ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterManifest
from shared.classifier.base import MODEL_KINDS
from shared.classifier.identity import base_model_label, same_base_model
from shared.config import Config
from shared.deployment.audit import record_event
from shared.errors import InvalidInput, NotFound
from shared.model_store.layout import (
    METRICS_FILE,
    MODEL_CARD_FILE,
    OPTIONAL_FILES,
    REQUIRED_FILES,
    TRAINING_DATA_FILE,
    finetuned_root,
    run_directory,
    run_model_path,
)
from shared.models import Category, FineTuningRun
from shared.training.lifecycle import new_imported_run
from shared.training.results import improvement_over_baseline

logger = logging.getLogger(__name__)

ARCHIVE_FILES = REQUIRED_FILES + OPTIONAL_FILES
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")

# Limits. A LoRA adapter is a few MiB; training_data.json grows with the examples.
MAX_ARCHIVE_BYTES = 60 * 1024 * 1024  # below the web app's 64 MiB request cap
MAX_MEMBERS = 16  # counted before names are read: a cheap cap on the work
MAX_TOTAL_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_MEMBER_BYTES = {
    ADAPTER_WEIGHTS: 150 * 1024 * 1024,
    ADAPTER_CONFIG: 1024 * 1024,
    METRICS_FILE: 5 * 1024 * 1024,
    TRAINING_DATA_FILE: 50 * 1024 * 1024,
    MODEL_CARD_FILE: 1024 * 1024,
}
# Text and tensors compress by 2-10x; a bomb by 1000x. Small members may compress well.
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_MIN_BYTES = 1024 * 1024
MAX_SAFETENSORS_HEADER_BYTES = 10 * 1024 * 1024
SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_CHUNK = 64 * 1024


# -- checks shared by import and deploy ---------------------------------------------------


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


# -- export --------------------------------------------------------------------------------


class _ChunkSink(io.RawIOBase):
    """A write-only, unseekable stream whose written bytes are collected for streaming."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def export_file_names(run_dir: Path) -> list[str]:
    """The archive members for a published run (required files must exist)."""
    missing = [name for name in REQUIRED_FILES if not (run_dir / name).is_file()]
    if missing:
        raise NotFound(f"the published model in {run_dir.name} lacks {', '.join(missing)}")
    return [name for name in ARCHIVE_FILES if (run_dir / name).is_file()]


def exportable_run_directory(session: Session, models_dir: str | Path, run_id: int) -> Path:
    """The published directory of a run that can be exported, or NotFound saying why."""
    run = session.get(FineTuningRun, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    if run.status not in ("completed", "imported"):
        raise NotFound(
            f"run {run_id} is {run.status}: only completed or imported runs have a model"
        )
    path = run_model_path(run, models_dir)
    if not path.is_dir():
        raise NotFound(f"run {run_id} has no published model files")
    export_file_names(path)
    return path


def iter_export_zip(run_dir: Path) -> Iterator[bytes]:
    """Stream a ZIP of the run's archive files chunk by chunk (no temporary file)."""
    names = export_file_names(run_dir)
    sink = _ChunkSink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=_date_time(run_dir / name))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            with (run_dir / name).open("rb") as source, archive.open(info, "w") as target:
                while chunk := source.read(_CHUNK):
                    target.write(chunk)
                    if sink.chunks:
                        yield sink.take()
            if sink.chunks:
                yield sink.take()
    if sink.chunks:
        yield sink.take()


def _date_time(path: Path) -> tuple[int, int, int, int, int, int]:
    import time

    stamp = time.gmtime(max(path.stat().st_mtime, 315532800))  # ZIP cannot date before 1980
    return stamp[:6]


# -- import --------------------------------------------------------------------------------


@dataclass
class CheckedArchive:
    """An archive that passed every check, with its members' bytes in memory."""

    files: dict[str, bytes]
    manifest: AdapterManifest
    metrics: dict[str, Any] | None
    training_data: dict[str, Any] | None
    sha256: str
    warnings: list[str] = field(default_factory=list)


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(f"archive refused: {reason}; nothing was imported")


def _check_member_name(info: zipfile.ZipInfo) -> None:
    name = info.filename
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or path.is_absolute():
        raise _refuse(f"member {name!r} has an absolute path")
    if "\\" in name or ".." in path.parts or ".." in name.split("\\"):
        raise _refuse(f"member {name!r} points outside the archive ('..' or a backslash path)")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise _refuse(f"member {name!r} is a symbolic link")
    # Unix type bits: none (DOS-made archive) or a regular file; never a device or FIFO.
    if info.is_dir() or stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        raise _refuse(f"member {name!r} is not a plain file")
    if info.flag_bits & 0x1:
        raise _refuse(f"member {name!r} is encrypted")
    if name.lower().endswith(PICKLE_SUFFIXES):
        raise _refuse(
            f"member {name!r} looks like pickled weights; only safetensors are accepted and "
            "pickles are never loaded"
        )
    if name not in ARCHIVE_FILES:
        raise _refuse(
            f"unexpected member {name!r}; an archive holds only {', '.join(ARCHIVE_FILES)} "
            "at its top level"
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int]) -> bytes:
    """Decompress one member with running caps: declared sizes in a ZIP can lie."""
    limit = min(MAX_MEMBER_BYTES[info.filename], budget[0])
    parts: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _refuse(
                        f"{info.filename} unpacks to more than {limit} bytes (zip bomb guard)"
                    )
                if size > RATIO_CHECK_MIN_BYTES and size > MAX_COMPRESSION_RATIO * max(
                    info.compress_size, 1
                ):
                    raise _refuse(f"{info.filename} is compressed suspiciously well (zip bomb)")
                parts.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
        raise _refuse(f"{info.filename} cannot be unpacked: {error}") from None
    budget[0] -= size
    return b"".join(parts)


def _parse_optional_json(name: str, data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _refuse(f"{name} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise _refuse(f"{name} must hold a JSON object")
    return value


def check_archive(stream: IO[bytes], config: Config, active_categories: set[str]) -> CheckedArchive:
    """Run every check on an uploaded archive; nothing is written. InvalidInput on failure."""
    raw = stream.read(MAX_ARCHIVE_BYTES + 1)
    if not raw:
        raise _refuse("the file is empty")
    if len(raw) > MAX_ARCHIVE_BYTES:
        raise _refuse(f"the file is larger than {MAX_ARCHIVE_BYTES // (1024 * 1024)} MiB")
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as error:
        raise _refuse(f"not a ZIP file ({error})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise _refuse(
                f"{len(infos)} members; an archive holds at most {MAX_MEMBERS} "
                f"(exported ones hold {len(ARCHIVE_FILES)})"
            )
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise _refuse("a member name appears twice")
        for info in infos:
            _check_member_name(info)
        declared = sum(info.file_size for info in infos)
        if declared > MAX_TOTAL_UNCOMPRESSED_BYTES:
            raise _refuse(f"members unpack to {declared} bytes, over the cap (zip bomb guard)")
        for info in infos:
            if info.file_size > MAX_MEMBER_BYTES[info.filename]:
                raise _refuse(
                    f"{info.filename} unpacks to {info.file_size} bytes, over its cap of "
                    f"{MAX_MEMBER_BYTES[info.filename]} (zip bomb guard)"
                )
            if (
                info.file_size > RATIO_CHECK_MIN_BYTES
                and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
            ):
                raise _refuse(f"{info.filename} is compressed suspiciously well (zip bomb)")
        missing = [name for name in REQUIRED_FILES if name not in names]
        if missing:
            raise _refuse(f"missing {', '.join(missing)}")
        budget = [MAX_TOTAL_UNCOMPRESSED_BYTES]
        files = {info.filename: _read_member(archive, info, budget) for info in infos}
    try:
        manifest = parse_manifest(files[ADAPTER_CONFIG])
        parse_safetensors_header(files[ADAPTER_WEIGHTS])
        check_compatible(manifest, config, active_categories)
    except ValueError as error:
        raise _refuse(str(error)) from None
    if MODEL_CARD_FILE in files:
        try:
            files[MODEL_CARD_FILE].decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse("README.md is not UTF-8 text") from None
    return CheckedArchive(
        files=files,
        manifest=manifest,
        metrics=_parse_optional_json(METRICS_FILE, files.get(METRICS_FILE)),
        training_data=_parse_optional_json(TRAINING_DATA_FILE, files.get(TRAINING_DATA_FILE)),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _default_trial_load(config: Config, adapter_dir: Path) -> None:
    from shared.classifier import load_finetuned_classifier

    load_finetuned_classifier(
        config.base_model, adapter_dir, version="import-check", kind=config.base_model_kind
    )


def import_archive(
    session: Session,
    config: Config,
    stream: IO[bytes],
    *,
    actor: str,
    filename: str = "archive.zip",
    trial_load: Callable[[Config, Path], None] | None = _default_trial_load,
) -> FineTuningRun:
    """Check, then store an archive as a new ``imported`` run; commits. InvalidInput on failure.

    ``trial_load`` loads the adapter onto the base model from the temporary directory
    (weights that do not fit the base model are refused before the run exists).
    """
    checked = check_archive(stream, config, active_category_names(session))
    root = finetuned_root(config.models_dir)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".import-{uuid.uuid4().hex[:8]}-"))
    target: Path | None = None
    try:
        for name, data in checked.files.items():
            (staging / name).write_bytes(data)
        if trial_load is not None:
            try:
                trial_load(config, staging)
            except Exception as error:
                raise _refuse(f"the adapter does not load onto this base model: {error}") from None
        run = _new_imported_run(checked, config, actor, filename)
        session.add(run)
        session.flush()
        target = run_directory(config.models_dir, run.id)
        if target.exists():
            raise _refuse(f"{target} already exists on the volume; remove it or ask an operator")
        os.rename(staging, target)
        run.model_path = str(target)
        record_event(
            session,
            "import",
            run_id=run.id,
            to_version=run.version,
            actor=actor,
            detail={"filename": filename[:200], "sha256": checked.sha256},
        )
        session.commit()
    except BaseException:
        session.rollback()
        shutil.rmtree(staging, ignore_errors=True)
        if target is not None and target.exists():
            shutil.rmtree(target, ignore_errors=True)
        raise
    logger.info("model imported run_id=%s sha256=%s actor=%s", run.id, checked.sha256, actor)
    return run


def _new_imported_run(
    checked: CheckedArchive, config: Config, actor: str, filename: str
) -> FineTuningRun:
    manifest = checked.manifest
    training_data = checked.training_data or {}

    def count(key: str) -> int:
        value = training_data.get(key)
        return len(value) if isinstance(value, list) else 0

    results = dict(checked.metrics or {})
    results["imported_from"] = {"filename": filename[:200], "sha256": checked.sha256}
    return new_imported_run(
        stage=f"imported from {filename[:150]}",
        base_model=manifest.base_model,
        label_set=list(manifest.labels),
        num_training_examples=count("train"),
        num_validation_examples=count("val"),
        num_test_examples=count("test"),
        training_config={"method": manifest.method, "imported": True},
        results=results,
        created_by=actor,
        improvement_over_baseline=improvement_over_baseline(results),
    )
