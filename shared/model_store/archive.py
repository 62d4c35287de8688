"""Import a fine-tuned model from a ZIP archive, safely.

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
import os
import shutil
import stat
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy.orm import Session

from shared.classifier.artifact import ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterManifest
from shared.config import Config
from shared.deployment.audit import record_event
from shared.errors import InvalidInput
from shared.model_store.checks import (
    active_category_names,
    check_compatible,
    parse_manifest,
    parse_safetensors_header,
)
from shared.model_store.layout import (
    ARCHIVE_FILES,
    METRICS_FILE,
    MODEL_CARD_FILE,
    REQUIRED_FILES,
    TRAINING_DATA_FILE,
    finetuned_root,
    run_directory,
)
from shared.models import FineTuningRun
from shared.training.lifecycle import new_imported_run
from shared.training.results import improvement_over_baseline

logger = logging.getLogger(__name__)

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
_CHUNK = 64 * 1024


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
