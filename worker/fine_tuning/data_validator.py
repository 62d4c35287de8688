"""Data checks before training, and the stratified train/validation/test split.

The quality checks themselves live in ``shared.data_quality`` (the dashboard
shows the same report). Here they decide whether a run may train, which
examples it uses, and how they are split.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Hashable, Sequence
from typing import Any

from shared.data_quality import QualityReport, check_training_data, normalize_text
from shared.training_config import (
    DEFAULT_SPLIT,
    NO_TEST_TEXT,
    split_counts,
    validate_split,
)

logger = logging.getLogger(__name__)


class DataValidationError(ValueError):
    """Training must be refused; the message says why and what to do."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


def check_examples(
    examples: Sequence[dict[str, Any]], categories: Sequence[str] | None = None
) -> QualityReport:
    """Run the shared quality checks on example dicts (``id``, ``text``, ``label``)."""
    for position, example in enumerate(examples):
        missing = {"id", "text", "label"} - set(example)
        if missing:
            raise DataValidationError(f"example #{position} lacks {sorted(missing)}")
    return check_training_data(
        [(example["id"], example["text"], example["label"]) for example in examples],
        categories=categories,
    )


def select_usable(
    examples: Sequence[dict[str, Any]], report: QualityReport
) -> tuple[list[dict[str, Any]], dict[str, list[Hashable]]]:
    """Drop what would corrupt training: every copy of a conflicting text, and repeat duplicates.

    Returns the usable examples and the excluded ids by reason. Near duplicates,
    short and long texts are only warned about.
    """
    conflicting = set(report.conflict_ids)
    seen: set[str] = set()
    usable: list[dict[str, Any]] = []
    excluded: dict[str, list[Hashable]] = {"conflict": [], "duplicate": []}
    for example in examples:
        if example["id"] in conflicting:
            excluded["conflict"].append(example["id"])
            continue
        key = normalize_text(example["text"])
        if key and key in seen:
            excluded["duplicate"].append(example["id"])
            continue
        seen.add(key)
        usable.append(example)
    return usable, excluded


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
    report = check_examples(examples, categories)
    if report.errors:
        raise DataValidationError(" ".join(report.errors), report.to_dict())
    usable, excluded = select_usable(examples, report)
    usable_report = check_examples(usable, categories)
    if usable_report.errors:
        raise DataValidationError(
            "After removing conflicting and duplicate texts: " + " ".join(usable_report.errors),
            report.to_dict(),
        )
    ids = stratified_split(usable, split, seed)
    if not ids["test"] and validate_split(split)[2] > 0:
        # Refused before training: evaluation would have nothing to judge the model on.
        raise DataValidationError(NO_TEST_TEXT, report.to_dict())
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
        "excluded": excluded,
        "per_category": usable_report.per_category,
        "seed": seed,
        "fractions": list(validate_split(split)),
    }
