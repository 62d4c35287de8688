"""Data validation, the stratified split and the training config (no model needed)."""

from __future__ import annotations

import pytest

from shared.training_config import TrainingConfig
from worker.fine_tuning.data_validator import (
    DataValidationError,
    split_counts,
    stratified_split,
    validate,
)


def _examples(per_label: dict[str, int]) -> list[dict]:
    rows = []
    for label, count in per_label.items():
        for index in range(count):
            rows.append(
                {
                    "id": f"{label}-{index}",
                    "text": f"{label} request number {index} about things",
                    "label": label,
                }
            )
    return rows


def test_a_category_with_two_examples_refuses_training() -> None:
    with pytest.raises(DataValidationError, match="'parks' has 2 example"):
        validate(_examples({"roads": 6, "parks": 2}))


def test_three_examples_per_category_are_refused_before_training_for_want_of_a_test_set():
    examples = [
        {"id": f"{label}{i}", "text": f"text {i} about the topic {label}", "label": label}
        for label in ("roads", "parks", "waste")
        for i in range(3)
    ]
    with pytest.raises(DataValidationError, match="No example is left for the test set"):
        validate(examples, (0.7, 0.15, 0.15), seed=0)
    # A separate test set (sortloop train --test-csv) needs no test split.
    assert validate(examples, (0.85, 0.15, 0.0), seed=0)["split"]["train"]
    # One category with a fourth example gives the test set one text.
    more = [*examples, {"id": "roads9", "text": "one more text about roads here", "label": "roads"}]
    assert len(validate(more, (0.7, 0.15, 0.15), seed=0)["split"]["test"]) == 1


def test_planted_duplicates_and_conflicts_are_reported_and_excluded() -> None:
    rows = _examples({"roads": 6, "parks": 6})
    rows.append({"id": "dup", "text": "ROADS request number 0 about things!", "label": "roads"})
    rows.append({"id": "conflict", "text": "parks request number 1 about things", "label": "roads"})
    result = validate(rows)
    assert result["report"]["duplicates"] == 2
    assert result["report"]["conflicts"] == 1
    assert set(result["excluded"]["conflict"]) == {"parks-1", "conflict"}
    assert result["excluded"]["duplicate"] == ["dup"]
    used = {i for ids in result["split"].values() for i in ids}
    assert "dup" not in used and "conflict" not in used


def test_split_is_stratified_deterministic_and_disjoint() -> None:
    rows = _examples({"roads": 20, "parks": 10, "waste": 3})
    first = stratified_split(rows, (0.7, 0.15, 0.15), seed=3)
    assert first == stratified_split(rows, (0.7, 0.15, 0.15), seed=3)
    assert first != stratified_split(rows, (0.7, 0.15, 0.15), seed=4)
    all_ids = first["train"] + first["val"] + first["test"]
    assert sorted(all_ids) == sorted(row["id"] for row in rows)
    assert sum(1 for i in first["train"] if i.startswith("waste")) == 3
    assert sum(1 for i in first["test"] if i.startswith("roads")) == 3


@pytest.mark.parametrize(
    ("size", "expected"), [(3, (3, 0, 0)), (4, (3, 0, 1)), (8, (6, 1, 1)), (20, (14, 3, 3))]
)
def test_small_categories_favour_train(size: int, expected: tuple[int, int, int]) -> None:
    assert split_counts(size, (0.7, 0.15, 0.15)) == expected


def test_config_round_trips_through_a_dict() -> None:
    config = TrainingConfig(
        method="head", lora_r=16, learning_rate=3e-4, epochs=4, split=(0.8, 0.1, 0.1)
    )
    assert TrainingConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "svm"),
        ("lora_r", 4),
        ("learning_rate", 1e-2),
        ("epochs", 0),
        ("epochs", 11),
        ("split", [0.5, 0.5]),
        ("split", [0.7, 0.2, 0.2]),
        ("gradient_accumulation_steps", 0),
        ("gradient_accumulation_steps", 65),
        ("lora_lr_multiplier", -1.0),
    ],
)
def test_bad_config_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        TrainingConfig(**{field: value})


def test_unknown_config_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="colour"):
        TrainingConfig.from_dict({"colour": "blue"})
