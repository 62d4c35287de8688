"""Plain data types and the scoring protocol shared by every classifier backend.

Nothing here imports torch: web, worker and tests can import these types cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

EMBEDDING = "embedding"
NLI = "nli"
MODEL_KINDS = (EMBEDDING, NLI)
DEFAULT_HYPOTHESIS_TEMPLATE = "This text is about {}."


@dataclass(frozen=True)
class CategorySpec:
    """A category as the model sees it: its name and the description it reads."""

    name: str
    description: str = ""

    @property
    def text(self) -> str:
        """What the model reads for this category (the name when there is no description)."""
        return self.description.strip() or self.name


@dataclass(frozen=True)
class Prediction:
    """The winning label, its probability and the probability of every category."""

    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "confidence": self.confidence, "scores": dict(self.scores)}


@runtime_checkable
class Classifier(Protocol):
    """What web and worker call. Implementations are thread-safe and load once."""

    version: str
    base_model: str
    kind: str

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> list[Prediction]:
        """Score every text against every category; softmax over the categories."""
        ...


class ClassifierError(Exception):
    """A model could not be loaded or used (missing files, incompatible adapter, ...)."""


def predictions_from_scores(
    score_rows: Sequence[Sequence[float]], categories: Sequence[CategorySpec]
) -> list[Prediction]:
    """Turn raw per-category scores (logits) into softmax predictions."""
    names = [category.name for category in categories]
    predictions = []
    for row in score_rows:
        top = max(row)
        exps = [math.exp(value - top) for value in row]
        total = sum(exps)
        probabilities = [value / total for value in exps]
        best = max(range(len(names)), key=probabilities.__getitem__)
        predictions.append(
            Prediction(
                label=names[best],
                confidence=float(probabilities[best]),
                scores={name: float(p) for name, p in zip(names, probabilities, strict=True)},
            )
        )
    return predictions


def check_categories(categories: Sequence[CategorySpec]) -> None:
    """Refuse an empty or ambiguous category list with a readable message."""
    if not categories:
        raise ValueError("classify() needs at least one category")
    names = [category.name for category in categories]
    if len(set(names)) != len(names):
        raise ValueError(f"category names must be unique, got {names}")
