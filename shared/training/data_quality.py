"""Quality checks on training examples, shared by the dashboard and the worker.

Plain Python (no torch): ``check_training_data`` takes ``(id, text, label)``
triples and returns a ``QualityReport`` with counts, readable warnings, errors
that must stop a training run, and the ids of the offending examples so the
dashboard can link to them.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_EXAMPLES_TO_TRAIN = 3
RECOMMENDED_EXAMPLES = 5
MAX_IMBALANCE_RATIO = 5.0
MIN_WORDS = 3
MIN_CHARS = 10
MAX_CHARS = 5000
MAX_TOKENS = 512
NEAR_DUPLICATE_THRESHOLD = 0.8

_WORD = re.compile(r"\w+", re.UNICODE)
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class QualityReport:
    """What the checks found. Counts are ints; ``*_ids`` list the offending examples."""

    total: int
    per_category: dict[str, int]
    duplicates: int
    duplicate_ids: tuple[Hashable, ...]
    duplicate_groups: tuple[tuple[Hashable, ...], ...]
    near_duplicates: int
    near_duplicate_ids: tuple[Hashable, ...]
    near_duplicate_pairs: tuple[tuple[Hashable, Hashable], ...]
    conflicts: int
    conflict_ids: tuple[Hashable, ...]
    conflict_groups: tuple[tuple[Hashable, ...], ...]
    too_short: int
    too_short_ids: tuple[Hashable, ...]
    too_long: int
    too_long_ids: tuple[Hashable, ...]
    imbalance_ratio: float
    small_categories: tuple[str, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    errors: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when nothing prevents training (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {
            "total": self.total,
            "per_category": dict(self.per_category),
            "duplicates": self.duplicates,
            "duplicate_ids": list(self.duplicate_ids),
            "duplicate_groups": [list(group) for group in self.duplicate_groups],
            "near_duplicates": self.near_duplicates,
            "near_duplicate_ids": list(self.near_duplicate_ids),
            "near_duplicate_pairs": [list(pair) for pair in self.near_duplicate_pairs],
            "conflicts": self.conflicts,
            "conflict_ids": list(self.conflict_ids),
            "conflict_groups": [list(group) for group in self.conflict_groups],
            "too_short": self.too_short,
            "too_short_ids": list(self.too_short_ids),
            "too_long": self.too_long,
            "too_long_ids": list(self.too_long_ids),
            "imbalance_ratio": self.imbalance_ratio,
            "small_categories": list(self.small_categories),
            "warnings": list(self.warnings),
            "errors": list(self.errors),
        }


def normalize_text(text: str) -> str:
    """Case-, accent-, punctuation- and whitespace-insensitive form used for duplicates."""
    folded = unicodedata.normalize("NFKD", text).casefold()
    return " ".join(_WORD.findall(folded))


def count_tokens(text: str) -> int:
    """A cheap stand-in for a subword tokenizer's count (words and punctuation marks)."""
    return len(_TOKEN.findall(text))


def find_near_duplicates(
    token_sets: list[frozenset[str]], threshold: float = NEAR_DUPLICATE_THRESHOLD
) -> list[tuple[int, int]]:
    """Index pairs whose token-set Jaccard similarity is >= ``threshold``.

    Prefix filtering: tokens are ordered rarest first and only pairs that share
    a token in their short prefixes are compared, so a few thousand texts take
    milliseconds instead of an all-pairs pass.
    """
    frequency = Counter(token for tokens in token_sets for token in tokens)
    ordered = [sorted(tokens, key=lambda token: (frequency[token], token)) for tokens in token_sets]
    index: dict[str, list[int]] = defaultdict(list)
    pairs: list[tuple[int, int]] = []
    for position in sorted(range(len(ordered)), key=lambda i: len(ordered[i])):
        tokens = ordered[position]
        if len(tokens) < 2:
            continue
        prefix_length = len(tokens) - math.ceil(threshold * len(tokens)) + 1
        candidates: set[int] = set()
        for token in tokens[:prefix_length]:
            candidates.update(index[token])
            index[token].append(position)
        mine = token_sets[position]
        for other in candidates:
            theirs = token_sets[other]
            if len(theirs) < threshold * len(mine):
                continue
            intersection = len(mine & theirs)
            if intersection / (len(mine) + len(theirs) - intersection) >= threshold:
                pairs.append((min(other, position), max(other, position)))
    return sorted(pairs)


def similar_groups(
    texts: Sequence[str], threshold: float = NEAR_DUPLICATE_THRESHOLD
) -> list[list[int]]:
    """Positions of ``texts`` grouped by exact (normalised) and near duplicates, each
    group in input order, groups ordered by their first member. Near duplicates link
    transitively (a union of the pairs ``find_near_duplicates`` finds)."""
    parent = list(range(len(texts)))

    def root(position: int) -> int:
        while parent[position] != position:
            parent[position] = parent[parent[position]]
            position = parent[position]
        return position

    def join(a: int, b: int) -> None:
        first, second = sorted((root(a), root(b)))
        parent[second] = first

    keys = [normalize_text(text) for text in texts]
    first_with_key: dict[str, int] = {}
    for position, key in enumerate(keys):
        if key in first_with_key:
            join(first_with_key[key], position)
        elif key:
            first_with_key[key] = position
    representatives = list(first_with_key.values())
    token_sets = [frozenset(keys[position].split()) for position in representatives]
    for a, b in find_near_duplicates(token_sets, threshold):
        join(representatives[a], representatives[b])
    groups: dict[int, list[int]] = defaultdict(list)
    for position in range(len(texts)):
        groups[root(position)].append(position)
    return sorted(groups.values(), key=lambda group: group[0])


def check_training_data(
    examples: Iterable[tuple[Hashable, str, str]],
    *,
    categories: Iterable[str] | None = None,
    near_duplicate_threshold: float = NEAR_DUPLICATE_THRESHOLD,
) -> QualityReport:
    """Run every check on ``(id, text, label)`` triples.

    ``categories`` (optional) lists the categories the model will serve, so a
    category with no example at all shows up in ``per_category`` with 0.
    Errors (training must be refused): a category with 1-2 examples, fewer
    than two labelled categories. Everything else is a warning.
    """
    rows = [(example_id, str(text), str(label)) for example_id, text, label in examples]
    counts: Counter[str] = Counter(label for _, _, label in rows)
    per_category = {name: 0 for name in (categories or [])}
    per_category.update(counts)

    by_text: dict[str, list[int]] = defaultdict(list)
    for position, (_, text, _) in enumerate(rows):
        by_text[normalize_text(text)].append(position)
    duplicate_groups = [group for key, group in by_text.items() if key and len(group) > 1]
    conflict_groups = [group for group in duplicate_groups if len({rows[i][2] for i in group}) > 1]
    duplicates = sum(len(group) - 1 for group in duplicate_groups)

    # Near duplicates: one representative per exact-duplicate group.
    representatives = [group[0] for key, group in by_text.items() if key]
    token_sets = [frozenset(normalize_text(rows[i][1]).split()) for i in representatives]
    near_pairs = [
        (rows[representatives[a]][0], rows[representatives[b]][0])
        for a, b in find_near_duplicates(token_sets, near_duplicate_threshold)
    ]

    too_short = [
        example_id
        for example_id, text, _ in rows
        if len(_WORD.findall(text)) < MIN_WORDS or len(text.strip()) < MIN_CHARS
    ]
    too_long = [
        example_id
        for example_id, text, _ in rows
        if len(text) > MAX_CHARS or count_tokens(text) > MAX_TOKENS
    ]

    present = [n for n in per_category.values() if n > 0]
    imbalance = round(max(present) / min(present), 2) if present else 0.0
    small = sorted(name for name, n in per_category.items() if 0 < n < MIN_EXAMPLES_TO_TRAIN)

    errors: list[str] = []
    warnings: list[str] = []
    for name in small:
        errors.append(
            f"Category '{name}' has {per_category[name]} example(s); at least "
            f"{MIN_EXAMPLES_TO_TRAIN} are needed to train."
        )
    if len(present) < 2:
        errors.append("At least two categories with examples are needed to train.")
    for name, n in sorted(per_category.items()):
        if n == 0:
            warnings.append(f"Category '{name}' has no examples; it will be scored zero-shot.")
        elif MIN_EXAMPLES_TO_TRAIN <= n < RECOMMENDED_EXAMPLES:
            warnings.append(
                f"Category '{name}' has only {n} examples; {RECOMMENDED_EXAMPLES} or more are recommended."
            )
    if imbalance > MAX_IMBALANCE_RATIO:
        largest = max(per_category, key=per_category.__getitem__)
        smallest = min((k for k, v in per_category.items() if v > 0), key=per_category.__getitem__)
        warnings.append(
            f"Classes are imbalanced {imbalance:g}:1 ('{largest}' {per_category[largest]} vs "
            f"'{smallest}' {per_category[smallest]}); more than {MAX_IMBALANCE_RATIO:g}:1 "
            "biases the model."
        )
    if duplicates:
        warnings.append(
            f"{duplicates} duplicate text(s) (same words, ignoring case and punctuation)."
        )
    if near_pairs:
        warnings.append(f"{len(near_pairs)} pair(s) of nearly identical texts.")
    if conflict_groups:
        warnings.append(
            f"{len(conflict_groups)} text(s) appear with different categories; "
            "review them before training."
        )
    if too_short:
        warnings.append(
            f"{len(too_short)} text(s) are very short (under {MIN_WORDS} words or {MIN_CHARS} characters)."
        )
    if too_long:
        warnings.append(
            f"{len(too_long)} text(s) are very long (over {MAX_CHARS} characters or "
            f"~{MAX_TOKENS} tokens); they will be truncated."
        )

    def ids_of(groups: list[list[int]]) -> tuple[Hashable, ...]:
        return tuple(rows[i][0] for group in groups for i in group)

    near_ids = tuple(dict.fromkeys(example_id for pair in near_pairs for example_id in pair))
    return QualityReport(
        total=len(rows),
        per_category=per_category,
        duplicates=duplicates,
        duplicate_ids=ids_of(duplicate_groups),
        duplicate_groups=tuple(tuple(rows[i][0] for i in group) for group in duplicate_groups),
        near_duplicates=len(near_pairs),
        near_duplicate_ids=near_ids,
        near_duplicate_pairs=tuple(near_pairs),
        conflicts=len(conflict_groups),
        conflict_ids=ids_of(conflict_groups),
        conflict_groups=tuple(tuple(rows[i][0] for i in group) for group in conflict_groups),
        too_short=len(too_short),
        too_short_ids=tuple(too_short),
        too_long=len(too_long),
        too_long_ids=tuple(too_long),
        imbalance_ratio=float(imbalance),
        small_categories=tuple(small),
        warnings=tuple(warnings),
        errors=tuple(errors),
    )
