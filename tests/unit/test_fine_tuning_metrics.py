"""Metrics, the deploy verdict and McNemar's test."""

from __future__ import annotations

import pytest

from worker.fine_tuning.metrics import (
    classification_metrics,
    deploy_verdict,
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


def test_mcnemar_is_one_for_identical_models_and_small_for_a_clear_winner() -> None:
    truth = ["a"] * 60
    assert mcnemar_p_value(truth, ["a"] * 60, ["a"] * 60) == 1.0
    assert mcnemar_p_value(truth, ["a"] * 60, ["a"] * 20 + ["b"] * 40) < 0.001
    assert mcnemar_p_value(truth[:12], ["a"] * 10 + ["b"] * 2, ["a"] * 11 + ["b"]) > 0.5


def test_fold_summary() -> None:
    summary = summarize_folds([0.8, 0.9, 1.0])
    assert summary["cv_accuracy_mean"] == pytest.approx(0.9)
    assert summary["cv_accuracy_std"] == pytest.approx(0.1)
