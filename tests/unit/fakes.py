"""Test doubles for the classifier: deterministic, instant, and able to fail on demand."""

from __future__ import annotations

from shared.classifier.base import CategorySpec, Prediction


class KeywordClassifier:
    """Picks the first category whose name shares a word with the text (else the last)."""

    kind = "embedding"
    base_model = "fake-model"

    def __init__(self, version: str = "base:fake-model", fail: bool = False) -> None:
        self.version = version
        self.fail = fail
        self.calls = 0

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> list[Prediction]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("the model exploded")
        predictions = []
        for text in texts:
            words = set(text.lower().split())
            label = next(
                (c.name for c in categories if words & set(c.name.lower().split())),
                categories[-1].name,
            )
            confidence = 0.5 + 0.4 * (len(text) % 10) / 10
            rest = (1 - confidence) / max(1, len(categories) - 1)
            scores = {c.name: (confidence if c.name == label else rest) for c in categories}
            predictions.append(Prediction(label, confidence, scores))
        return predictions
