"""Reading a run's results: the deploy verdict and the gain over the base model.

The engine writes ``results`` (``worker.fine_tuning.engine``: the verdict of
``metrics.deploy_verdict``, copied to the top level as ``meets_criteria``, and
``improvement_over_baseline`` = the verdict's ``accuracy_gain``). Every reader (the
registry, the runs API, the model in use, the archive import, the pipeline's record
step) asks these two functions, which also understand rows and archives written
before both keys were at the top level. Plain Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def meets_criteria(results: Mapping[str, Any] | None) -> bool | None:
    """The deploy-criteria verdict: True, False, or None when the run was never judged."""
    results = results or {}
    if isinstance(results.get("meets_criteria"), bool):
        return results["meets_criteria"]
    verdict = results.get("verdict")
    if isinstance(verdict, Mapping) and isinstance(verdict.get("meets_criteria"), bool):
        return verdict["meets_criteria"]
    return None


def improvement_over_baseline(results: Mapping[str, Any] | None) -> float | None:
    """Accuracy minus the base model's on the same test set, or None when unknown."""
    results = results or {}
    if _number(results.get("improvement_over_baseline")):
        return float(results["improvement_over_baseline"])
    accuracy, baseline = results.get("accuracy"), results.get("baseline_accuracy")
    if _number(accuracy) and _number(baseline):
        return float(accuracy) - float(baseline)
    return None


def metric(results: Mapping[str, Any] | None, key: str) -> Any:
    """One headline number of the results (the verdict's keys read through the helpers)."""
    if key == "meets_criteria":
        return meets_criteria(results)
    if key == "improvement_over_baseline":
        return improvement_over_baseline(results)
    return (results or {}).get(key)
