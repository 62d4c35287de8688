"""What an admin may choose for a run, and the training settings, checked strictly.

``validate_training_config`` fills in the engine's defaults (``shared.training_config``)
and refuses, naming the field, what the worker would refuse; the settings page edits
the four settings in ``EDITABLE_SETTINGS``. Plain Python over a session.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from shared.errors import InvalidInput
from shared.settings_store import get_all_settings, set_setting
from shared.training_config import (
    DEFAULT_SPLIT,
    EPOCH_RANGE,
    LEARNING_RATE_RANGE,
    LORA_RANKS,
    METHODS,
    TrainingConfig,
)

# What an admin may choose: the engine's own ranges and defaults (shared.training_config).
_ENGINE_DEFAULTS = TrainingConfig()
DEFAULT_TRAINING_CONFIG: dict[str, Any] = {
    "method": _ENGINE_DEFAULTS.method,
    "lora_r": _ENGINE_DEFAULTS.lora_r,
    "learning_rate": _ENGINE_DEFAULTS.learning_rate,
    "epochs": _ENGINE_DEFAULTS.epochs,
    "split": list(DEFAULT_SPLIT),
    "cross_validation": _ENGINE_DEFAULTS.cross_validation,
}
MAX_MIN_TRAINING_EXAMPLES = 100_000

# Settings an admin edits on the settings page, with their types.
EDITABLE_SETTINGS: dict[str, type] = {
    "fine_tuning_enabled": bool,
    "min_training_examples": int,
    "auto_train": bool,
    "auto_deploy": bool,
}


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_training_config(body: object) -> dict[str, Any]:
    """The start request's config with defaults filled in; InvalidInput naming a bad field."""
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise InvalidInput("the body must be a JSON object of training options")
    unknown = sorted(set(body) - set(DEFAULT_TRAINING_CONFIG))
    if unknown:
        raise InvalidInput(
            f"unknown training option(s): {', '.join(unknown)}; "
            f"known: {', '.join(DEFAULT_TRAINING_CONFIG)}"
        )
    config = dict(DEFAULT_TRAINING_CONFIG)
    config.update(body)

    if config["method"] not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}, got {config['method']!r}")
    lora_r = config["lora_r"]
    if isinstance(lora_r, bool) or lora_r not in LORA_RANKS:
        raise InvalidInput(
            f"lora_r must be one of {', '.join(map(str, LORA_RANKS))}, got {lora_r!r}"
        )
    config["lora_r"] = int(lora_r)
    low, high = LEARNING_RATE_RANGE
    rate = config["learning_rate"]
    if not is_number(rate) or not low <= rate <= high:
        raise InvalidInput(f"learning_rate must be a number from {low:g} to {high:g}, got {rate!r}")
    config["learning_rate"] = float(rate)
    low_epochs, high_epochs = EPOCH_RANGE
    epochs = config["epochs"]
    if not is_number(epochs) or int(epochs) != epochs or not low_epochs <= epochs <= high_epochs:
        raise InvalidInput(
            f"epochs must be a whole number from {low_epochs} to {high_epochs}, got {epochs!r}"
        )
    config["epochs"] = int(epochs)
    config["split"] = _validate_split(config["split"])
    if not isinstance(config["cross_validation"], bool):
        raise InvalidInput(
            f"cross_validation must be true or false, got {config['cross_validation']!r}"
        )
    try:  # the worker builds the same TrainingConfig: refuse here what it would refuse
        TrainingConfig.from_dict(config)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    return config


def _validate_split(split: object) -> list[float]:
    if (
        not isinstance(split, list | tuple)
        or len(split) != 3
        or not all(is_number(part) for part in split)
    ):
        raise InvalidInput(f"split must be three numbers (train, validation, test), got {split!r}")
    if any(part <= 0 for part in split):
        raise InvalidInput(f"every part of split must be above 0, got {list(split)!r}")
    if abs(sum(split) - 1.0) > 1e-6:
        raise InvalidInput(f"split must sum to 1, got {list(split)!r} (sum {sum(split):g})")
    return [float(part) for part in split]


def training_settings(session: Session) -> dict[str, Any]:
    """The settings the training pages show and edit."""
    values = get_all_settings(session)
    return {key: values[key] for key in EDITABLE_SETTINGS}


def update_training_settings(session: Session, body: object) -> dict[str, Any]:
    """Check every given setting, then store them all (the caller commits)."""
    if not isinstance(body, Mapping) or not body:
        raise InvalidInput(
            "the body must be a JSON object with one or more of: " + ", ".join(EDITABLE_SETTINGS)
        )
    unknown = sorted(set(body) - set(EDITABLE_SETTINGS))
    if unknown:
        raise InvalidInput(
            f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(EDITABLE_SETTINGS)}"
        )
    for key, value in body.items():
        if EDITABLE_SETTINGS[key] is bool and not isinstance(value, bool):
            raise InvalidInput(f"{key} must be true or false, got {value!r}")
        if EDITABLE_SETTINGS[key] is int and (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_MIN_TRAINING_EXAMPLES
        ):
            raise InvalidInput(
                f"{key} must be a whole number from 1 to {MAX_MIN_TRAINING_EXAMPLES}, got {value!r}"
            )
    for key, value in body.items():
        set_setting(session, key, value)
    session.flush()
    return training_settings(session)
