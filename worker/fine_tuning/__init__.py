"""The fine-tuning engine: data checks, LoRA/head training, evaluation, export.

The Celery tasks call the step functions of ``worker.fine_tuning.engine``
(``validate``, ``train_model``, ``evaluate_model``, ``publish_model``) with plain
JSON-ready data; ``sortloop train`` runs them in one process
(``worker.fine_tuning.cli``). Names are imported lazily so that importing this
package does not load torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DataValidationError",
    "TrainingCancelled",
    "TrainingConfig",
    "evaluate_model",
    "publish_model",
    "staging_directory",
    "train_model",
    "validate",
]


def __getattr__(name: str) -> Any:
    if name == "TrainingConfig":
        from shared.training_config import TrainingConfig

        return TrainingConfig
    if name == "DataValidationError":
        from worker.fine_tuning.data_validator import DataValidationError

        return DataValidationError
    if name in __all__:
        from worker.fine_tuning import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
