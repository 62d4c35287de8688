"""What crosses a boundary is typed: each shape survives to_dict → from_dict unchanged,
says its schema version, and refuses what it does not know."""

from __future__ import annotations

import json

import pytest

from shared.training.results import TrainingResult, Verdict, meets_criteria
from shared.training.snapshot import SNAPSHOT_SCHEMA_VERSION, RunSnapshot

SNAPSHOT = RunSnapshot(
    example_ids=(3, 5, 8),
    categories=({"name": "roads", "description": "potholes"},),
    timeline=({"status": "queued", "at": "2026-12-03T10:00:00+00:00"},),
    task_ids=("a", "b", "c"),
    split={"train": [3], "val": [5], "test": [8]},
    quality={"warnings": []},
    excluded={"conflict": [], "duplicate": []},
    per_category={"roads": 3},
    staging_dir="/data/models/staging/run_1",
)


def test_a_run_snapshot_round_trips_through_json():
    stored = json.loads(json.dumps(SNAPSHOT.to_dict()))
    assert stored["schema_version"] == SNAPSHOT_SCHEMA_VERSION
    assert RunSnapshot.from_dict(stored) == SNAPSHOT


def test_a_fresh_snapshot_leaves_out_what_no_step_has_set():
    fresh = RunSnapshot(example_ids=(1, 2), categories=({"name": "a", "description": ""},))
    assert set(fresh.to_dict()) == {
        "example_ids", "categories", "timeline", "task_ids", "schema_version",
    }  # fmt: skip
    assert not RunSnapshot.from_dict(fresh.to_dict()).validated


def test_rows_written_before_the_schema_version_still_read():
    old = {"example_ids": [1], "categories": [], "timeline": [], "split": {"train": [1]}}
    snapshot = RunSnapshot.from_dict(old)
    assert snapshot.validated and snapshot.used_example_ids() == [1]
    assert RunSnapshot.from_dict(None) == RunSnapshot()


def test_a_key_this_code_does_not_know_is_kept_not_lost():
    stored = {"example_ids": [1], "calibration_ids": [4]}
    snapshot = RunSnapshot.from_dict(stored)
    assert snapshot.extra == {"calibration_ids": [4]}
    assert RunSnapshot.from_dict(snapshot.to_dict()) == snapshot


def test_a_snapshot_from_newer_code_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="newer than this code"):
        RunSnapshot.from_dict({"schema_version": SNAPSHOT_SCHEMA_VERSION + 1})


def test_the_timeline_grows_by_one_entry_per_status():
    later = SNAPSHOT.with_status("preparing")
    assert [entry["status"] for entry in later.timeline] == ["queued", "preparing"]
    assert SNAPSHOT.timeline != later.timeline  # frozen: the original is unchanged


VERDICT = Verdict(
    meets_criteria=True,
    accuracy_gain=0.125,
    improved_categories=("roads",),
    weak_categories=(),
    p_value=0.03,
    significant=True,
    reasons=("accuracy 0.900 vs baseline 0.775: met",),
)
TRAINING = TrainingResult(
    adapter_dir="/data/models/staging/run_1",
    method="lora",
    kind="embedding",
    base_model="all-MiniLM-L6-v2",
    train_seconds=3.5,
    num_train=16,
    num_val=4,
    best_epoch=2,
    epochs_run=4,
    train_loss=(1.0, 0.5),
    val_loss=(0.9, 0.6),
    val_accuracy=(0.5, 0.75),
    steps=8,
    adapted_blocks="top block",
)


@pytest.mark.parametrize("value", [VERDICT, TRAINING], ids=["verdict", "training result"])
def test_results_round_trip_through_json_with_their_schema_version(value):
    stored = json.loads(json.dumps(value.to_dict()))
    assert stored["schema_version"] == 1
    assert type(value).from_dict(stored) == value


def test_the_engine_writes_a_verdict_the_readers_understand():
    from worker.fine_tuning.metrics import classification_metrics, deploy_verdict

    tuned = classification_metrics(["a", "b", "a"], ["a", "b", "a"], ["a", "b"])
    base = classification_metrics(["a", "b", "a"], ["b", "b", "b"], ["a", "b"])
    written = deploy_verdict(tuned, base, (2, 0))
    verdict = Verdict.from_dict(written)
    assert verdict.meets_criteria is meets_criteria({"verdict": written}) is True
    assert verdict.to_dict() == written


def test_a_training_result_keeps_keys_a_newer_engine_adds():
    stored = {**TRAINING.to_dict(), "temperature": 0.7}
    assert TrainingResult.from_dict(stored).to_dict() == stored


def test_a_training_result_without_its_adapter_is_refused():
    stored = TRAINING.to_dict()
    del stored["adapter_dir"]
    with pytest.raises(ValueError, match="adapter_dir"):
        TrainingResult.from_dict(stored)


def test_an_evaluation_result_round_trips_and_keeps_the_engines_other_keys():
    from shared.training.results import EvaluationResult

    written = {
        "accuracy": 0.9,
        "macro_f1": 0.88,
        "baseline_accuracy": 0.7,
        "baseline_macro_f1": 0.65,
        "improvement_over_baseline": 0.2,
        "verdict": VERDICT.to_dict(),
        "meets_criteria": True,
        "num_test": 40,
        "labels": ["roads", "parks"],
        "calibration": {"ece": 0.04},
        "per_category_f1": {"roads": 0.9, "parks": 0.86},
    }
    result = EvaluationResult.from_dict(written)
    assert result.meets_criteria is True and result.extra["calibration"] == {"ece": 0.04}
    stored = json.loads(json.dumps(result.to_dict()))
    assert EvaluationResult.from_dict(stored) == result
    assert {key: stored[key] for key in written} == written
