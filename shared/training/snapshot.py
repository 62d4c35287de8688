"""What a run took and what its steps found: the typed ``data_snapshot`` of a run row.

Start-training writes the examples and categories it snapshotted; ``validate_data``
adds the split, the quality report, what it excluded and the usable count per
category; ``train`` adds where the adapter waits; the lifecycle appends every status
change to the timeline. Everyone reads and writes it through ``RunSnapshot`` instead
of guessing at a dict. Plain Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

SNAPSHOT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RunSnapshot:
    """``FineTuningRun.data_snapshot``. Optional parts are absent until a step sets them."""

    example_ids: tuple[int, ...] = ()
    categories: tuple[dict[str, str], ...] = ()  # {"name", "description"}
    timeline: tuple[dict[str, str], ...] = ()  # {"status", "at"}
    task_ids: tuple[str, ...] = ()
    split: dict[str, list[int]] | None = None  # {"train", "val", "test"}: example ids
    quality: dict[str, Any] | None = None  # QualityReport.to_dict() of every example
    excluded: dict[str, list[int]] | None = None  # {"conflict", "duplicate"}: example ids
    per_category: dict[str, int] | None = None  # usable examples per category
    staging_dir: str | None = None  # the trained adapter, before it is published
    # Keys a newer step wrote that this code does not know: kept, never lost.
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SNAPSHOT_SCHEMA_VERSION

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RunSnapshot:
        """Read a stored snapshot (rows written before the schema version count as 1)."""
        data = dict(data or {})
        version = int(data.get("schema_version", 1))
        if version > SNAPSHOT_SCHEMA_VERSION:
            raise ValueError(
                f"data_snapshot schema_version {version} is newer than this code "
                f"({SNAPSHOT_SCHEMA_VERSION}); upgrade Sortloop"
            )
        known = {spec.name for spec in fields(cls)} - {"extra"}
        extra = {key: data.pop(key) for key in sorted(set(data) - known)}
        for name in ("example_ids", "categories", "timeline", "task_ids"):
            data[name] = tuple(data.get(name) or ())
        data["schema_version"] = SNAPSHOT_SCHEMA_VERSION
        return cls(**data, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; parts no step has set yet are left out."""
        data: dict[str, Any] = dict(self.extra)
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None or spec.name == "extra":
                continue
            data[spec.name] = list(value) if isinstance(value, tuple) else value
        return data

    def with_changes(self, **changes: Any) -> RunSnapshot:
        return replace(self, **changes)

    def with_status(self, status: str, at: datetime | None = None) -> RunSnapshot:
        """One more (status, time) entry in the timeline."""
        moment = (at or datetime.now(UTC)).isoformat()
        return replace(self, timeline=(*self.timeline, {"status": status, "at": moment}))

    @property
    def validated(self) -> bool:
        return self.split is not None

    def used_example_ids(self) -> list[int]:
        """Every example of the split (train, validation and test)."""
        split = self.split or {}
        return [*split.get("train", []), *split.get("val", []), *split.get("test", [])]
