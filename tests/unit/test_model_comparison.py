"""Comparing two models on the same held-out examples."""

from __future__ import annotations

import pytest

from shared.classifier.base import Prediction
from shared.deployment.comparison import compare_models, f1_per_category
from shared.errors import InvalidInput, NotFound
from shared.stats import mcnemar_exact_p_value
from tests.factories import make_category, make_run, make_training_example


class FixedAnswers:
    """A classifier that answers from a table (text → label)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def classify(self, texts, categories):
        return [Prediction(self.answers[text], 1.0, {}) for text in texts]


@pytest.mark.parametrize(
    ("a_only", "b_only", "expected"),
    [(0, 0, 1.0), (5, 5, 1.0), (0, 12, 0.00048828125), (3, 10, 0.09228515625)],
)
def test_mcnemar_exact_p_value_matches_the_binomial_test(a_only, b_only, expected) -> None:
    assert mcnemar_exact_p_value(a_only, b_only) == pytest.approx(expected)


def test_f1_per_category() -> None:
    scores = f1_per_category(["x", "x", "y", "y"], ["x", "y", "y", "y"], ["x", "y"])
    assert scores == pytest.approx({"x": 2 / 3, "y": 0.8})


def test_both_models_are_scored_on_run_b_test_split(session, config) -> None:
    for name in ("cards", "loans"):
        make_category(session, name=name)
    test_ids = [
        make_training_example(session, message=f"text {n}", corrected_category=label).id
        for n, label in enumerate(["cards"] * 6 + ["loans"] * 6)
    ]
    run_b = make_run(session, status="completed", data_snapshot={"split": {"test": test_ids}})
    truth = {f"text {n}": ("cards" if n < 6 else "loans") for n in range(12)}
    base = {text: "cards" for text in truth}  # right on half
    tuned = dict(truth)  # right everywhere

    def load(_config, run):
        return FixedAnswers(base if run is None else tuned)

    result = compare_models(session, config, "base", run_b.id, load_classifier=load)

    assert result["num_examples"] == 12
    assert (result["a"]["accuracy"], result["b"]["accuracy"]) == (0.5, 1.0)
    assert result["b"]["per_category_f1"] == {"cards": 1.0, "loans": 1.0}
    assert result["mcnemar"] == {"a_right_b_wrong": 0, "a_wrong_b_right": 6, "p_value": 0.03125}
    assert result["a"]["model"] == "base" and result["b"]["run_id"] == run_b.id


def test_two_runs_are_not_scored_on_texts_either_of_them_trained_on(session, config) -> None:
    for name in ("cards", "loans"):
        make_category(session, name=name)
    ids = [
        make_training_example(session, message=f"text {n}", corrected_category=label).id
        for n, label in enumerate(["cards", "loans"] * 6)
    ]
    # Different splits of the same examples: each run tested on texts the other trained on.
    run_a = make_run(
        session,
        status="completed",
        data_snapshot={"split": {"train": ids[:6], "val": ids[6:8], "test": ids[8:]}},
    )
    run_b = make_run(
        session,
        status="completed",
        data_snapshot={"split": {"train": ids[4:10], "val": [], "test": ids[:2] + ids[10:]}},
    )
    truth = {f"text {n}": ("cards" if n % 2 == 0 else "loans") for n in range(12)}

    def load(_config, run):
        return FixedAnswers(truth)

    result = compare_models(session, config, run_a.id, run_b.id, load_classifier=load)

    # Test texts 8-11 (a) and 0, 1, 10, 11 (b): 0 and 1 trained a, 8 and 9 trained b.
    assert result["num_examples"] == 2
    assert result["test_set"] == (
        f"the test splits of runs {run_a.id} and {run_b.id}, "
        "less 4 texts one of the two models trained on"
    )


def test_a_run_without_a_test_split_cannot_be_compared(session, config) -> None:
    run = make_run(session, status="completed")
    with pytest.raises(InvalidInput, match="no recorded test examples"):
        compare_models(session, config, "base", run.id, load_classifier=lambda *_: None)


@pytest.mark.parametrize(
    ("a", "b", "error"),
    [("x", "1", InvalidInput), ("base", "base", InvalidInput), ("base", "99", NotFound)],
)
def test_bad_model_names_are_refused(session, config, a, b, error) -> None:
    with pytest.raises(error):
        compare_models(session, config, a, b, load_classifier=lambda *_: None)
