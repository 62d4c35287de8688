"""`sortloop train`: the engine on a CSV, JSON on stdout, readable errors."""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from shared.cli import cli  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402

BANKING = SHARED_DATA / "banking.csv"  # tests may read ../shared/data; a missing file fails


def _write(path: Path, rows: list[dict]) -> str:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=["message", "topic"])
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_train_prints_one_json_object_with_the_contract_keys(tmp_path) -> None:
    with BANKING.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    rng = random.Random(1)
    labels = sorted({r["label"] for r in rows})[:4]
    train = [
        {"message": r["text"], "topic": r["label"]}
        for r in rows
        if r["split"] == "train" and r["label"] in labels
    ]
    test = [
        {"message": r["text"], "topic": r["label"]}
        for r in rng.sample(rows, 400)
        if r["split"] == "test" and r["label"] in labels
    ]
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--csv",
            _write(tmp_path / "train.csv", train),
            "--test-csv",
            _write(tmp_path / "test.csv", test),
            "--text-column",
            "message",
            "--label-column",
            "topic",
            "--per-category",
            "6",
            "--method",
            "head",
            "--out",
            str(tmp_path / "models"),
        ],
    )
    assert result.exit_code == 0, result.output
    output = json.loads(result.stdout.strip().splitlines()[-1])
    for key in (
        "accuracy",
        "macro_f1",
        "baseline_accuracy",
        "baseline_macro_f1",
        "per_category_f1",
        "confusion_matrix",
        "meets_criteria",
        "train_seconds",
        "num_train",
        "num_test",
    ):
        assert key in output
    assert output["num_test"] == len(test)
    assert output["num_train"] + output["num_val"] == 24
    assert Path(output["adapter_dir"], "adapter_model.safetensors").is_file()
    assert 0 <= output["calibration_error"] <= 1 and 0 <= output["baseline_calibration_error"] <= 1
    assert output["descriptions_as_examples"] in (True, False)  # the head's choice, reported
    assert output["description_facets"] in (True, False)  # parts of listing descriptions
    assert output["middle_layer"] in (None, {"block": 3, "weight": 0.5})  # what it reads
    assert output["token_weight"] >= 0  # how much its word-by-word match counts (0: none)
    texts = {row["message"]: row["topic"] for row in train}
    for issue in output["label_issues"]:  # training texts whose labels it doubts, as given
        assert texts[issue["text"]] == issue["label"] != issue["suggested"]
    card = Path(output["adapter_dir"], "README.md").read_text()
    assert "- calibration (this model): mean confidence" in card
    assert any(reason.startswith(f"on {len(test)} test texts") for reason in output["reasons"])
    # The same log lines a run keeps on its page, on stderr.
    assert " INFO worker.fine_tuning.data_validator: data validated examples=24" in result.stderr
    assert " INFO worker.fine_tuning.engine: trained method=head" in result.stderr
    assert f" INFO worker.fine_tuning.engine: evaluated test={len(test)} " in result.stderr


def test_a_category_with_two_examples_is_refused_with_a_message(tmp_path) -> None:
    rows = [{"message": f"the road number {i} has a pothole", "topic": "roads"} for i in range(6)]
    rows += [{"message": f"the park bench {i} is broken", "topic": "parks"} for i in range(2)]
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--csv",
            _write(tmp_path / "x.csv", rows),
            "--text-column",
            "message",
            "--label-column",
            "topic",
        ],
    )
    assert result.exit_code != 0
    assert "'parks' has 2 example" in result.output


def test_a_missing_column_is_named(tmp_path) -> None:
    path = _write(tmp_path / "x.csv", [{"message": "hello there world", "topic": "a"}])
    result = CliRunner().invoke(cli, ["train", "--csv", path])
    assert result.exit_code != 0
    assert "no column 'text'" in result.output
