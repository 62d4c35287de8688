"""Compare two models on the same held-out examples: accuracy, per-category F1, McNemar.

Model ``a`` is a run id or ``"base"``; model ``b`` is a run id. The examples are run
b's recorded test split (``training_data.json`` in its published directory, else the
split in ``data_snapshot``), joined with run a's when a is a run, less any text either
run trained on, so neither model is scored on examples it holds by memory; the answer
says where the examples came from. McNemar's exact test asks whether the two models'
disagreements (one right, the other wrong) lean one way more than chance would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.classifier.base import CategorySpec, Classifier
from shared.classifier.identity import base_model_version
from shared.config import Config
from shared.deployment.registry import BASE, DEPLOYABLE_STATUSES
from shared.errors import InvalidInput, NotFound
from shared.inputs import MAX_ID, parse_whole_number
from shared.model_store.layout import TRAINING_DATA_FILE, run_model_path
from shared.models import Category, FineTuningRun, TrainingExample
from shared.stats import mcnemar_exact_p_value
from shared.training.data_quality import normalize_text

MAX_EXAMPLES = 5000

LoadClassifier = Callable[[Config, FineTuningRun | None], Classifier]


@dataclass(frozen=True)
class HeldOutExample:
    text: str
    label: str


def f1_per_category(
    truth: list[str], predicted: list[str], labels: Iterable[str]
) -> dict[str, float]:
    """F1 of each label (0.0 where it was never predicted nor true)."""
    scores = {}
    for label in labels:
        true_positive = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p == label)
        predicted_count = sum(1 for p in predicted if p == label)
        true_count = sum(1 for t in truth if t == label)
        denominator = predicted_count + true_count
        scores[label] = 2 * true_positive / denominator if denominator else 0.0
    return scores


def _parse_model(value: object, allow_base: bool) -> int | None:
    text = str(value or "").strip().lower()
    if allow_base and text == BASE:
        return None
    try:
        return parse_whole_number(text, "model", 1, MAX_ID)
    except InvalidInput:
        raise InvalidInput(
            f"model {value!r} is not a run id" + (' or "base"' if allow_base else "")
        ) from None


def _deployable_run(session: Session, run_id: int) -> FineTuningRun:
    run = session.get(FineTuningRun, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    if run.status not in DEPLOYABLE_STATUSES:
        raise InvalidInput(f"run {run_id} is {run.status}: it has no model to compare")
    return run


# Where a recorded split keeps each part's examples (ids, or dicts with text and label).
_PART_KEYS = {"test": ("test", "test_ids", "test_examples"), "train": ("train",), "val": ("val",)}


def _split_items(container: object, part: str = "test") -> list[Any]:
    """The items of one part of a recorded split, whatever shape the pipeline stored it in."""
    if not isinstance(container, dict):
        return []
    for key in _PART_KEYS[part]:
        if isinstance(container.get(key), list):
            return container[key]
    split = container.get("split")
    return _split_items(split, part) if isinstance(split, dict) else []


def _recorded_examples(
    session: Session, config: Config, run: FineTuningRun, part: str = "test"
) -> list[HeldOutExample]:
    items: list[Any] = []
    path = run_model_path(run, config.models_dir) / TRAINING_DATA_FILE
    if path.is_file():
        try:
            items = _split_items(json.loads(path.read_text(encoding="utf-8")), part)
        except (OSError, json.JSONDecodeError):
            items = []
    if not items:
        items = _split_items(run.data_snapshot, part)
    examples: list[HeldOutExample] = []
    ids = [item for item in items if isinstance(item, int)]
    for item in items:
        if isinstance(item, dict):
            text = item.get("text") or item.get("message")
            label = item.get("label") or item.get("corrected_category") or item.get("category")
            if isinstance(text, str) and isinstance(label, str):
                examples.append(HeldOutExample(text, label))
            elif isinstance(item.get("id"), int):
                ids.append(item["id"])
    if ids:
        rows = session.execute(
            select(TrainingExample.message, TrainingExample.corrected_category).where(
                TrainingExample.id.in_(ids)
            )
        )
        examples.extend(HeldOutExample(text, label) for text, label in rows)
    return examples


def held_out_examples(
    session: Session, config: Config, run_a: FineTuningRun | None, run_b: FineTuningRun
) -> tuple[list[HeldOutExample], str]:
    """The shared test set and a sentence saying where it came from.

    With two runs, their test splits are joined and any text either run trained on
    (its recorded train and validation parts) is left out: a model holds its
    training texts (it was fitted on them) and would get them right by memory.
    """
    examples = _recorded_examples(session, config, run_b)
    source = f"run {run_b.id}'s test split"
    if run_a is not None:
        extra = _recorded_examples(session, config, run_a)
        if extra:
            source = f"the test splits of runs {run_a.id} and {run_b.id}"
        trained = {
            normalize_text(example.text)
            for run in (run_a, run_b)
            for part in ("train", "val")
            for example in _recorded_examples(session, config, run, part)
        }
        joined = examples + extra
        examples = [example for example in joined if normalize_text(example.text) not in trained]
        if len(examples) < len(joined):
            left_out = len(joined) - len(examples)
            source += f", less {left_out} texts one of the two models trained on"
    unique = list(dict.fromkeys(examples))[:MAX_EXAMPLES]
    return unique, source


def _default_load(config: Config, run: FineTuningRun | None) -> Classifier:
    from shared.classifier import load_base_classifier, load_finetuned_classifier

    if run is None:
        return load_base_classifier(config.base_model, config.base_model_kind)
    return load_finetuned_classifier(
        config.base_model,
        run_model_path(run, config.models_dir),
        version=run.version,
        kind=config.base_model_kind,
    )


@dataclass(frozen=True)
class PreparedComparison:
    """What ``compare_models`` checks before it loads a model: both runs, the categories
    and the shared test set."""

    run_a: FineTuningRun | None
    run_b: FineTuningRun
    categories: list[CategorySpec]
    examples: list[HeldOutExample]
    test_set: str

    @property
    def a(self) -> str:
        return BASE if self.run_a is None else str(self.run_a.id)

    @property
    def b(self) -> str:
        return str(self.run_b.id)


def prepare_comparison(
    session: Session, config: Config, a: object, b: object
) -> PreparedComparison:
    """Check the two models and find their shared test set, loading no model (fast enough
    for a web request): InvalidInput for a malformed id, a run with no model or no test
    examples in active categories, NotFound for an unknown run."""
    a_id, b_id = _parse_model(a, allow_base=True), _parse_model(b, allow_base=False)
    assert b_id is not None
    run_b = _deployable_run(session, b_id)
    run_a = None if a_id is None else _deployable_run(session, a_id)
    categories = [
        CategorySpec(row.name, row.description)
        for row in session.scalars(
            select(Category).where(Category.active.is_(True)).order_by(Category.name)
        )
    ]
    names = {category.name for category in categories}
    examples, source = held_out_examples(session, config, run_a, run_b)
    examples = [example for example in examples if example.label in names]
    if not examples:
        raise InvalidInput(
            f"run {run_b.id} has no recorded test examples in active categories to compare on"
        )
    return PreparedComparison(run_a, run_b, categories, examples, source)


def compare_models(
    session: Session,
    config: Config,
    a: object,
    b: object,
    *,
    load_classifier: LoadClassifier = _default_load,
) -> dict[str, Any]:
    """Both models on the same held-out examples; InvalidInput when there are none."""
    prepared = prepare_comparison(session, config, a, b)
    run_a, run_b, categories = prepared.run_a, prepared.run_b, prepared.categories
    examples, source = prepared.examples, prepared.test_set
    texts = [example.text for example in examples]
    truth = [example.label for example in examples]
    try:
        predicted_a = [p.label for p in load_classifier(config, run_a).classify(texts, categories)]
        predicted_b = [p.label for p in load_classifier(config, run_b).classify(texts, categories)]
    except Exception as error:
        raise InvalidInput(f"a model could not be loaded to compare: {error}") from error
    right_a = [p == t for p, t in zip(predicted_a, truth, strict=True)]
    right_b = [p == t for p, t in zip(predicted_b, truth, strict=True)]
    a_only = sum(1 for x, y in zip(right_a, right_b, strict=True) if x and not y)
    b_only = sum(1 for x, y in zip(right_a, right_b, strict=True) if y and not x)
    labels = sorted(set(truth))
    p_value = mcnemar_exact_p_value(a_only, b_only)

    def summary(run: FineTuningRun | None, predicted: list[str], right: list[bool]):
        per_category = f1_per_category(truth, predicted, labels)
        return {
            "model": BASE if run is None else str(run.id),
            "version": base_model_version(config.base_model) if run is None else run.version,
            "run_id": None if run is None else run.id,
            "accuracy": sum(right) / len(right),
            "macro_f1": sum(per_category.values()) / len(per_category),
            "per_category_f1": per_category,
        }

    return {
        "a": summary(run_a, predicted_a, right_a),
        "b": summary(run_b, predicted_b, right_b),
        "num_examples": len(examples),
        "test_set": source,
        "categories": labels,
        "mcnemar": {
            "a_right_b_wrong": a_only,
            "a_wrong_b_right": b_only,
            "p_value": p_value,
        },
        "p_value": p_value,
        "significant": p_value < 0.05,
    }
