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
from dataclasses import MISSING, asdict, dataclass, field, fields
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


VERDICT_SCHEMA_VERSION = 1
TRAINING_RESULT_SCHEMA_VERSION = 1


def _check_version(kind: str, data: Mapping[str, Any], supported: int) -> None:
    version = int(data.get("schema_version", 1))
    if version > supported:
        raise ValueError(f"{kind} schema_version {version} is newer than this code ({supported})")


@dataclass(frozen=True)
class Verdict:
    """The deploy criteria's answer for a run (``results["verdict"]``), with the reasons.

    ``meets_criteria``: (accuracy > baseline + 5 points, or per-category F1 improved for
    most categories) and no category F1 below 0.3. ``p_value``/``significant``: McNemar
    on the test texts, informative only.
    """

    meets_criteria: bool
    accuracy_gain: float
    improved_categories: tuple[str, ...] = ()
    weak_categories: tuple[str, ...] = ()
    p_value: float | None = None
    significant: bool | None = None
    reasons: tuple[str, ...] = ()
    schema_version: int = VERDICT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("improved_categories", "weak_categories", "reasons"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        _check_version("verdict", data, VERDICT_SCHEMA_VERSION)
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown verdict key(s): {', '.join(unknown)}")
        values = dict(data)
        for name in ("improved_categories", "weak_categories", "reasons"):
            values[name] = tuple(values.get(name) or ())
        values["schema_version"] = VERDICT_SCHEMA_VERSION
        return cls(**values)


@dataclass(frozen=True)
class TrainingResult:
    """What ``train_model`` reports (``results["training"]``): where the adapter is, how
    training went, on what. Keys the engine adds later are kept in ``extra``."""

    adapter_dir: str
    method: str
    kind: str
    base_model: str
    train_seconds: float
    num_train: int
    num_val: int
    best_epoch: int | None = None
    epochs_run: int | None = None
    train_loss: tuple[float, ...] = ()
    val_loss: tuple[float, ...] = ()
    val_accuracy: tuple[float, ...] = ()
    steps: int | None = None
    adapted_blocks: str | None = None
    device: str = "cpu"
    peak_gpu_memory_mb: float | None = None
    # lora: the validation loss of the head-first start an adapter epoch must beat.
    start_val_loss: float | None = None
    # The logistic head every embedding run ends with (calibration, temperature, folds).
    linear_head: dict[str, Any] | None = None
    # Labelled texts whose labels the model, not having seen them, doubts: each with the
    # training example's ``id`` (where the examples had one), ``text``, ``label``, ``suggested``
    # and both probabilities (``worker.fine_tuning.linear_head.label_issues``).
    label_issues: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = TRAINING_RESULT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        for name in ("train_loss", "val_loss", "val_accuracy"):
            data[name] = list(data[name])
        extra = data.pop("extra")
        return {**extra, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingResult:
        _check_version("training result", data, TRAINING_RESULT_SCHEMA_VERSION)
        known = {spec.name for spec in fields(cls)} - {"extra"}
        missing = sorted(
            spec.name
            for spec in fields(cls)
            if spec.name in known and spec.default is MISSING and spec.name not in data
        )
        if missing:
            raise ValueError(f"training result lacks {', '.join(missing)}")
        values = {key: value for key, value in data.items() if key in known}
        for name in ("train_loss", "val_loss", "val_accuracy"):
            values[name] = tuple(values.get(name) or ())
        values["schema_version"] = TRAINING_RESULT_SCHEMA_VERSION
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


EVALUATION_RESULT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class EvaluationResult:
    """What ``evaluate_model`` reports: the fine-tuned and the base model on the same test
    set, the gain and the verdict. The engine's other keys (per-category scores,
    confusion matrices, calibration, the model in use, cross-validation) ride in
    ``extra`` and come back unchanged."""

    accuracy: float
    macro_f1: float
    baseline_accuracy: float
    baseline_macro_f1: float
    improvement_over_baseline: float
    verdict: Verdict
    num_test: int
    labels: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = EVALUATION_RESULT_SCHEMA_VERSION

    @property
    def meets_criteria(self) -> bool:
        return self.verdict.meets_criteria

    def to_dict(self) -> dict[str, Any]:
        data = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        extra = data.pop("extra")
        data["verdict"] = self.verdict.to_dict()
        data["labels"] = list(self.labels)
        data["meets_criteria"] = self.meets_criteria  # read at the top level by the API
        return {**extra, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationResult:
        _check_version("evaluation result", data, EVALUATION_RESULT_SCHEMA_VERSION)
        known = {spec.name for spec in fields(cls)} - {"extra"}
        required = {"accuracy", "macro_f1", "baseline_accuracy", "baseline_macro_f1", "verdict"}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"evaluation result lacks {', '.join(missing)}")
        values = {key: value for key, value in data.items() if key in known}
        values["verdict"] = Verdict.from_dict(data["verdict"])
        values["improvement_over_baseline"] = improvement_over_baseline(data)
        values["num_test"] = int(data.get("num_test") or 0)
        values["labels"] = tuple(data.get("labels") or ())
        values["schema_version"] = EVALUATION_RESULT_SCHEMA_VERSION
        extra = {k: v for k, v in data.items() if k not in known and k != "meets_criteria"}
        return cls(**values, extra=extra)
