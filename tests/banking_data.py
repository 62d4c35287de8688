"""Real labelled texts for pipeline tests: a few BANKING77 messages per coarse topic.

Reads ../shared/data/banking.csv (see its README); the product never needs it.
"""

from __future__ import annotations

import csv
from functools import lru_cache

from tests.conftest import SHARED_DATA

BANKING_CSV = SHARED_DATA / "banking.csv"


@lru_cache(maxsize=1)
def _train_rows() -> tuple[tuple[str, str], ...]:
    with BANKING_CSV.open(encoding="utf-8", newline="") as stream:
        return tuple(
            (row["text"], row["label"]) for row in csv.DictReader(stream) if row["split"] == "train"
        )


def banking_examples(per_category: int, categories: int = 8) -> list[tuple[str, str]]:
    """``per_category`` (text, label) pairs for each of the first ``categories`` topics,
    in file order (deterministic)."""
    taken: dict[str, int] = {}
    chosen: list[tuple[str, str]] = []
    for text, label in _train_rows():
        if label not in taken and len(taken) >= categories:
            continue
        if taken.get(label, 0) < per_category:
            taken[label] = taken.get(label, 0) + 1
            chosen.append((text, label))
    return chosen


def banking_topics(categories: int = 8) -> list[str]:
    return sorted({label for _, label in banking_examples(1, categories)})
