"""Data checks before training, and the stratified train/validation/test split.

Whether a run may train, and which examples it keeps, is decided by
``shared.training.readiness`` (the rule the dashboard and start-training apply
too); here the kept examples are split.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Hashable, Sequence
from typing import Any

from shared.training.readiness import check_readiness
from shared.training_config import (
    DEFAULT_SPLIT,
    split_counts,
    validate_split,
)

logger = logging.getLogger(__name__)


class DataValidationError(ValueError):
    """Training must be refused; the message says why and what to do."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


def _require_fields(examples: Sequence[dict[str, Any]]) -> None:
    for position, example in enumerate(examples):
        missing = {"id", "text", "label"} - set(example)
        if missing:
            raise DataValidationError(f"example #{position} lacks {sorted(missing)}")


def stratified_split(
    examples: Sequence[dict[str, Any]],
    fractions: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
) -> dict[str, list[Hashable]]:
    """Deterministic per-category split of example ids into train/val/test."""
    fractions = validate_split(fractions)
    by_label: dict[str, list[dict[str, Any]]] = {}
    for example in examples:
        by_label.setdefault(example["label"], []).append(example)
    split: dict[str, list[Hashable]] = {"train": [], "val": [], "test": []}
    for label in sorted(by_label):
        members = sorted(by_label[label], key=lambda example: str(example["id"]))
        random.Random(f"{seed}:{label}").shuffle(members)
        train, val, _ = split_counts(len(members), fractions)
        split["train"] += [example["id"] for example in members[:train]]
        split["val"] += [example["id"] for example in members[train : train + val]]
        split["test"] += [example["id"] for example in members[train + val :]]
    return split


def validate(
    examples: Sequence[dict[str, Any]],
    split: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    categories: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Check, clean and split; JSON-ready result for the next pipeline step.

    Returns ``{"report": ..., "split": {"train": [ids], "val": [...], "test": [...]},
    "excluded": {"conflict": [...], "duplicate": [...]}, "per_category": {...}}``.
    Raises ``DataValidationError`` when training must be refused.
    """
    _require_fields(examples)
    readiness = check_readiness(
        [(example["id"], example["text"], example["label"]) for example in examples],
        split=split,
        categories=categories,
    )
    report = readiness.report
    if readiness.errors:
        # The rule the dashboard and start-training apply (shared.training.readiness).
        raise DataValidationError(" ".join(readiness.errors), report.to_dict())
    kept = set(readiness.usable_ids)
    usable = [example for example in examples if example["id"] in kept]
    ids = stratified_split(usable, split, seed)
    logger.info(
        "data validated examples=%d usable=%d train=%d val=%d test=%d warnings=%d",
        len(examples),
        len(usable),
        len(ids["train"]),
        len(ids["val"]),
        len(ids["test"]),
        len(report.warnings),
    )
    return {
        "report": report.to_dict(),
        "split": ids,
        "excluded": readiness.excluded,
        "per_category": readiness.usable_per_category,
        "seed": seed,
        "fractions": list(validate_split(split)),
    }
