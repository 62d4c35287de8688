"""Evaluation metrics, the deploy verdict (plan 5.4) and model comparison.

Plain Python, deterministic, no torch: labels are strings.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from shared.stats import mcnemar_exact_p_value
from shared.training.results import Verdict

ACCURACY_MARGIN = 0.05
MIN_CATEGORY_F1 = 0.3
SIGNIFICANCE_LEVEL = 0.05
# Below this many test texts the verdict says what one text weighs.
SMALL_TEST_SET = 50
CALIBRATION_BINS = 10


def _safe_divide(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, precision/recall/F1 (macro and micro), per-category scores, confusion matrix.

    ``confusion_matrix[i][j]`` counts texts of ``labels[i]`` predicted as ``labels[j]``.
    Macro averages run over categories with test support (a category absent from
    the test set has no F1). Predictions outside ``labels`` count as errors.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    index = {label: position for position, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for truth, guess in zip(y_true, y_pred, strict=True):
        if truth in index and guess in index:
            matrix[index[truth]][index[guess]] += 1
    total = len(y_true)
    correct = sum(1 for truth, guess in zip(y_true, y_pred, strict=True) if truth == guess)
    per_category: dict[str, dict[str, float]] = {}
    for label, position in index.items():
        true_positive = matrix[position][position]
        predicted = sum(1 for guess in y_pred if guess == label)
        support = sum(1 for truth in y_true if truth == label)
        precision = _safe_divide(true_positive, predicted)
        recall = _safe_divide(true_positive, support)
        f1 = _safe_divide(2 * precision * recall, precision + recall)
        per_category[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
        }
    supported = [scores for scores in per_category.values() if scores["support"] > 0]
    accuracy = _safe_divide(correct, total)
    return {
        "accuracy": accuracy,
        "precision_macro": _mean([s["precision"] for s in supported]),
        "recall_macro": _mean([s["recall"] for s in supported]),
        "macro_f1": _mean([s["f1"] for s in supported]),
        # Single-label: micro precision = micro recall = micro F1 = accuracy.
        "precision_micro": accuracy,
        "recall_micro": accuracy,
        "micro_f1": accuracy,
        "per_category": per_category,
        "per_category_f1": {label: scores["f1"] for label, scores in per_category.items()},
        "confusion_matrix": matrix,
        "labels": list(labels),
        "num_examples": total,
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def deploy_verdict(
    finetuned: dict[str, Any],
    baseline: dict[str, Any],
    changes: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The plan's 5.4 criteria, with the reasons in words (``Verdict.to_dict()``).

    Deploy if (accuracy > baseline + 5 points OR per-category F1 improved for
    most categories) AND no category (with test support) has F1 < 0.3.

    ``changes`` (texts only the fine-tuned model gets right, texts only the base
    model gets right; see ``discordant_counts``) adds how sure the test set can
    be: McNemar's exact p-value, and what one test text weighs when there are
    few. It informs the admin and does not change the criteria: with 20-50
    corrections the test set is too small for any difference to be clear.
    """
    reasons: list[str] = []
    gain = finetuned["accuracy"] - baseline["accuracy"]
    accuracy_ok = gain > ACCURACY_MARGIN
    reasons.append(
        f"accuracy {finetuned['accuracy']:.3f} vs baseline {baseline['accuracy']:.3f} "
        f"({gain * 100:+.1f} points; more than {ACCURACY_MARGIN * 100:.0f} needed): "
        + ("met" if accuracy_ok else "not met")
    )
    supported = [
        label for label, scores in finetuned["per_category"].items() if scores["support"] > 0
    ]
    improved = [
        label
        for label in supported
        if finetuned["per_category_f1"][label] > baseline["per_category_f1"].get(label, 0.0)
    ]
    majority_ok = len(improved) * 2 > len(supported) if supported else False
    reasons.append(
        f"per-category F1 improved for {len(improved)} of {len(supported)} categories: "
        + ("a majority" if majority_ok else "not a majority")
    )
    weak = sorted(
        label for label in supported if finetuned["per_category_f1"][label] < MIN_CATEGORY_F1
    )
    if weak:
        reasons.append(
            f"F1 below {MIN_CATEGORY_F1} for {', '.join(weak)} (possible catastrophic forgetting)"
        )
    else:
        reasons.append(f"every category has F1 >= {MIN_CATEGORY_F1}")
    p_value = None
    if changes is not None:
        p_value = mcnemar_exact_p_value(*changes)
        reasons.append(_significance(changes, p_value, int(finetuned.get("num_examples") or 0)))
    meets = (accuracy_ok or majority_ok) and not weak
    if not meets:
        reasons.append(
            "keep the current model; collect more corrections (especially for weak "
            "categories) or adjust the learning rate / epochs"
        )
    return Verdict(
        meets_criteria=meets,
        accuracy_gain=gain,
        improved_categories=tuple(improved),
        weak_categories=tuple(weak),
        p_value=p_value,
        significant=None if p_value is None else p_value < SIGNIFICANCE_LEVEL,
        reasons=tuple(reasons),
    ).to_dict()


def _significance(changes: tuple[int, int], p_value: float, num_test: int) -> str:
    fixed, broken = changes
    said = (
        f"on {num_test} test texts the fine-tuned model got {fixed} right that the base "
        f"model got wrong and {broken} wrong that it got right: McNemar p = {p_value:.3g}, "
    )
    if p_value < SIGNIFICANCE_LEVEL:
        return said + "a real difference"
    said += "the difference could be chance"
    if 0 < num_test < SMALL_TEST_SET:
        said += (
            f" (one test text is {100 / num_test:.1f} points of accuracy; "
            "more corrections make a clearer test)"
        )
    return said


def mcnemar_p_value(
    y_true: Sequence[str], predictions_a: Sequence[str], predictions_b: Sequence[str]
) -> float:
    """Two-sided exact McNemar p-value for two models' predictions on the same texts
    (the test compare-models uses: a binomial test of the discordant texts at 1/2)."""
    only_a, only_b = discordant_counts(y_true, predictions_a, predictions_b)
    return mcnemar_exact_p_value(only_a, only_b)


def discordant_counts(
    y_true: Sequence[str], predictions_a: Sequence[str], predictions_b: Sequence[str]
) -> tuple[int, int]:
    """Texts that only model a gets right, and texts that only model b gets right."""
    rows = list(zip(y_true, predictions_a, predictions_b, strict=True))
    only_a = sum(1 for truth, a, b in rows if a == truth and b != truth)
    only_b = sum(1 for truth, a, b in rows if b == truth and a != truth)
    return only_a, only_b


def calibration(
    y_true: Sequence[str], predictions: Sequence[Any], bins: int = CALIBRATION_BINS
) -> dict[str, Any]:
    """How well the confidences match how often the model is right.

    ``predictions`` have ``label`` and ``confidence`` (the top softmax probability).
    Texts are put in ``bins`` equal-width confidence bins; ``ece`` (expected
    calibration error) is the texts-weighted mean gap between a bin's mean confidence
    and its accuracy: 0 when "80% confident" means right 8 times in 10.
    ``overconfidence`` is the mean confidence minus the accuracy (above 0: the model
    claims more than it delivers). ``bins`` lists the non-empty bins.
    """
    if len(y_true) != len(predictions):
        raise ValueError(f"{len(y_true)} true labels but {len(predictions)} predictions")
    if not predictions:
        return {"ece": 0.0, "overconfidence": 0.0, "mean_confidence": 0.0, "bins": []}
    grouped: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for truth, prediction in zip(y_true, predictions, strict=True):
        confidence = min(1.0, max(0.0, float(prediction.confidence)))
        grouped[min(bins - 1, int(confidence * bins))].append(
            (confidence, prediction.label == truth)
        )
    total = len(predictions)
    rows, ece = [], 0.0
    for index, members in enumerate(grouped):
        if not members:
            continue
        confidence = _mean([c for c, _ in members])
        accuracy = _mean([1.0 if right else 0.0 for _, right in members])
        ece += len(members) / total * abs(confidence - accuracy)
        rows.append(
            {
                "from": index / bins,
                "to": (index + 1) / bins,
                "count": len(members),
                "confidence": confidence,
                "accuracy": accuracy,
            }
        )
    mean_confidence = _mean([float(p.confidence) for p in predictions])
    accuracy = _mean(
        [1.0 if p.label == t else 0.0 for t, p in zip(y_true, predictions, strict=True)]
    )
    return {
        "ece": ece,
        "overconfidence": mean_confidence - accuracy,
        "mean_confidence": mean_confidence,
        "bins": rows,
    }


def summarize_folds(accuracies: Sequence[float]) -> dict[str, float]:
    """Mean and (sample) standard deviation of per-fold accuracies."""
    if not accuracies:
        raise ValueError("no folds to summarize")
    return {
        "cv_accuracy_mean": statistics.fmean(accuracies),
        "cv_accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
        "cv_folds": len(accuracies),
    }
