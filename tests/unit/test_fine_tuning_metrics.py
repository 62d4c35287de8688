"""Metrics, the deploy verdict and McNemar's test."""

from __future__ import annotations

import random

import pytest

from shared.classifier.base import Prediction
from worker.fine_tuning.metrics import (
    calibration,
    classification_metrics,
    deploy_verdict,
    discordant_counts,
    mcnemar_p_value,
    summarize_folds,
)

LABELS = ["a", "b", "c"]


def test_metrics_of_a_known_confusion() -> None:
    truth = ["a", "a", "b", "b", "c", "c"]
    predicted = ["a", "b", "b", "b", "c", "a"]
    result = classification_metrics(truth, predicted, LABELS)
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert result["per_category_f1"]["b"] == pytest.approx(0.8)
    assert result["micro_f1"] == result["accuracy"]
    assert 0 < result["macro_f1"] < 1


def test_metrics_agree_with_scikit_learn() -> None:
    # Written out (scikit-learn's import costs about 0.7 s in every fresh training
    # process); scikit-learn is the reference. A label outside the categories and a
    # category never predicted are included.
    from sklearn import metrics as reference

    rng = random.Random(5)
    labels = ["a", "b", "c", "d"]
    truth = [rng.choice(labels[:3]) for _ in range(200)]
    predicted = [rng.choice([*labels[:2], "c", "unknown"]) for _ in range(200)]
    result = classification_metrics(truth, predicted, labels)
    assert result["accuracy"] == pytest.approx(reference.accuracy_score(truth, predicted))
    assert (
        result["confusion_matrix"]
        == reference.confusion_matrix(truth, predicted, labels=labels).tolist()
    )
    precision, recall, f1, support = reference.precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    for position, label in enumerate(labels):
        scores = result["per_category"][label]
        assert scores["precision"] == pytest.approx(precision[position])
        assert scores["recall"] == pytest.approx(recall[position])
        assert scores["f1"] == pytest.approx(f1[position])
        assert scores["support"] == support[position]
    # Macro averages run over the categories with test support ("d" has none).
    assert result["macro_f1"] == pytest.approx(
        reference.f1_score(truth, predicted, labels=labels[:3], average="macro", zero_division=0)
    )


def test_verdict_accepts_a_clear_gain_and_refuses_a_collapsed_category() -> None:
    truth = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    base = classification_metrics(truth, ["a"] * 10 + ["a"] * 5 + ["b"] * 5 + ["c"] * 10, LABELS)
    better = classification_metrics(truth, truth, LABELS)
    verdict = deploy_verdict(better, base)
    assert verdict["meets_criteria"] and "met" in verdict["reasons"][0]
    collapsed = classification_metrics(truth, ["a"] * 10 + ["b"] * 10 + ["a"] * 10, LABELS)
    refused = deploy_verdict(collapsed, base)
    assert not refused["meets_criteria"]
    assert refused["weak_categories"] == ["c"]


def test_verdict_says_whether_the_test_set_can_tell_the_models_apart() -> None:
    truth = ["a"] * 100 + ["b"] * 100
    base_predictions = ["a"] * 100 + ["a"] * 60 + ["b"] * 40
    tuned_predictions = ["a"] * 95 + ["b"] * 5 + ["b"] * 100
    changes = discordant_counts(truth, tuned_predictions, base_predictions)
    assert changes == (60, 5)
    clear = deploy_verdict(
        classification_metrics(truth, tuned_predictions, LABELS),
        classification_metrics(truth, base_predictions, LABELS),
        changes,
    )
    assert clear["meets_criteria"] and clear["significant"]
    assert clear["p_value"] == pytest.approx(
        mcnemar_p_value(truth, tuned_predictions, base_predictions)
    )
    assert "on 200 test texts the fine-tuned model got 60 right" in clear["reasons"][3]
    assert clear["reasons"][3].endswith("a real difference")

    # Six test texts, one more right: the plan's criteria are met (+16.7 points), and
    # the verdict says plainly that this could be chance.
    truth = ["a", "a", "b", "b", "c", "c"]
    small = deploy_verdict(
        classification_metrics(truth, ["a", "a", "b", "b", "c", "a"], LABELS),
        classification_metrics(truth, ["a", "a", "b", "a", "c", "a"], LABELS),
        (1, 0),
    )
    assert small["meets_criteria"] and small["significant"] is False
    assert small["p_value"] == 1.0
    assert "the difference could be chance (one test text is 16.7 points" in small["reasons"][3]

    # Without the changes (a caller that has no predictions) nothing is claimed.
    assert (
        deploy_verdict(
            classification_metrics(truth, truth, LABELS),
            classification_metrics(truth, truth, LABELS),
        )["significant"]
        is None
    )


def test_calibration_compares_confidence_with_how_often_the_model_is_right() -> None:
    truth = ["a"] * 10
    # Ten answers at 90% confidence, 6 right: 30 points overconfident.
    sure = [Prediction("a" if i < 6 else "b", 0.9, {}) for i in range(10)]
    result = calibration(truth, sure)
    assert result["ece"] == pytest.approx(0.3)
    assert result["overconfidence"] == pytest.approx(0.3)
    assert result["mean_confidence"] == pytest.approx(0.9)
    [only] = result["bins"]
    assert (only["from"], only["to"], only["count"]) == (pytest.approx(0.9), 1.0, 10)
    assert only["accuracy"] == pytest.approx(0.6)

    # Half at 55% (half right), half at 100% (all right): calibrated.
    mixed = [Prediction("a" if i % 2 else "b", 0.55, {}) for i in range(10)]
    mixed += [Prediction("a", 1.0, {}) for _ in range(10)]
    result = calibration(truth * 2, mixed)
    assert result["ece"] == pytest.approx(0.025)  # (|0.55-0.5| + |1-1|) / 2
    assert [b["count"] for b in result["bins"]] == [10, 10]
    assert calibration([], [])["bins"] == []


def test_mcnemar_is_one_for_identical_models_and_small_for_a_clear_winner() -> None:
    truth = ["a"] * 60
    assert mcnemar_p_value(truth, ["a"] * 60, ["a"] * 60) == 1.0
    assert mcnemar_p_value(truth, ["a"] * 60, ["a"] * 20 + ["b"] * 40) < 0.001
    assert mcnemar_p_value(truth[:12], ["a"] * 10 + ["b"] * 2, ["a"] * 11 + ["b"]) > 0.5


def test_fold_summary() -> None:
    summary = summarize_folds([0.8, 0.9, 1.0])
    assert summary["cv_accuracy_mean"] == pytest.approx(0.9)
    assert summary["cv_accuracy_std"] == pytest.approx(0.1)
