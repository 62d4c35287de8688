"""Export a published run as a flat ZIP, streamed in chunks (no temporary file)."""

from __future__ import annotations

import io
import logging
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from shared.errors import NotFound
from shared.model_store.layout import (
    ARCHIVE_FILES,
    REQUIRED_FILES,
    run_model_path,
)
from shared.models import FineTuningRun

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024


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
