"""Whether the training data allows a run: one rule, applied to the data as training sees it.

The dashboard (``ready``), start-training and auto-train (a 400 with the reason) and the
worker's data check (``validate_data``) all call ``check_readiness``, so they cannot
disagree: the checks run on every example, then again on what training keeps after
every copy of a conflicting text and every repeated duplicate are dropped, and the
split must leave the test set at least one text. Plain Python, no database.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

from shared.training.data_quality import QualityReport, check_training_data, normalize_text
from shared.training_config import DEFAULT_SPLIT, NO_TEST_TEXT, leaves_a_test_text, validate_split

Row = tuple[Hashable, str, str]  # (id, text, label)
AFTER_DROPPING = "After removing conflicting and duplicate texts: "


def select_usable(
    rows: Sequence[Row], report: QualityReport
) -> tuple[list[Row], dict[str, list[Hashable]]]:
    """Drop what would corrupt training: every copy of a conflicting text, and repeat
    duplicates. Returns the usable rows and the excluded ids by reason. Near duplicates,
    short and long texts are only warned about."""
    conflicting = set(report.conflict_ids)
    seen: set[str] = set()
    usable: list[Row] = []
    excluded: dict[str, list[Hashable]] = {"conflict": [], "duplicate": []}
    for row in rows:
        example_id, text, _ = row
        if example_id in conflicting:
            excluded["conflict"].append(example_id)
            continue
        key = normalize_text(text)
        if key and key in seen:
            excluded["duplicate"].append(example_id)
            continue
        seen.add(key)
        usable.append(row)
    return usable, excluded


@dataclass(frozen=True)
class Readiness:
    """The verdict on a set of examples. ``errors`` are the data's blocking reasons;
    ``ready`` also needs ``minimum`` examples in all."""

    total: int
    minimum: int
    report: QualityReport  # every example: what the dashboard shows
    usable_report: QualityReport | None  # what training keeps (None when refused before)
    usable_ids: tuple[Hashable, ...]
    excluded: dict[str, list[Hashable]] = field(default_factory=dict)
    errors: tuple[str, ...] = ()

    @property
    def enough(self) -> bool:
        return self.total >= self.minimum

    @property
    def ready(self) -> bool:
        return self.enough and not self.errors

    @property
    def usable_per_category(self) -> dict[str, int]:
        return dict((self.usable_report or self.report).per_category)

    def reason(self) -> str | None:
        """Why a run is refused, in the words start-training answers with; None when ready."""
        if not self.enough:
            return (
                f"too few training examples: {self.total}, at least {self.minimum} are needed "
                "(correct or confirm more submissions, or lower min_training_examples)"
            )
        if self.errors:
            return "the training data cannot be used yet: " + " ".join(self.errors)
        return None


def check_readiness(
    examples: Iterable[Row],
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    categories: Iterable[str] | None = None,
    minimum: int = 0,
) -> Readiness:
    """Check ``(id, text, label)`` rows as the dashboard, start-training and the worker do.

    ``split`` is the run's (train, validation, test) fractions (a test part of 0, as
    ``sortloop train`` with a separate test file uses, needs no test text);
    ``categories`` the served categories (a category with no example shows with 0);
    ``minimum`` the ``min_training_examples`` setting (the worker passes 0).
    """
    rows = [(example_id, str(text), str(label)) for example_id, text, label in examples]
    category_list = list(categories) if categories is not None else None
    report = check_training_data(rows, categories=category_list)
    if report.errors:
        return Readiness(len(rows), minimum, report, None, (), {}, tuple(report.errors))
    usable, excluded = select_usable(rows, report)
    usable_report = check_training_data(usable, categories=category_list)
    errors: tuple[str, ...] = ()
    if usable_report.errors:
        errors = (AFTER_DROPPING + " ".join(usable_report.errors),)
    elif validate_split(split)[2] > 0 and not leaves_a_test_text(
        usable_report.per_category.values(), split
    ):
        errors = (NO_TEST_TEXT,)
    return Readiness(
        len(rows),
        minimum,
        report,
        usable_report,
        tuple(row[0] for row in usable),
        excluded,
        errors,
    )
