"""The default method on real data it was not tuned on: a slice of hwu.csv, 8 per category."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from shared.classifier import CategorySpec, default_base_model, load_base_classifier  # noqa: E402
from shared.training_config import DEFAULT_METHOD, TrainingConfig  # noqa: E402
from tests.conftest import SHARED_DATA, default_run, labelled_slice  # noqa: E402
from worker.fine_tuning import embedding_trainer, engine, linear_head  # noqa: E402

HWU = SHARED_DATA / "hwu.csv"  # tests may read ../shared/data; a missing file fails
PER_CATEGORY, TEST_PER_CATEGORY = 8, 40


@pytest.fixture(scope="module")
def hwu() -> dict:
    """8 labelled texts per scenario (18) and up to 40 unseen test texts per scenario."""
    labels, examples, test = labelled_slice(HWU, PER_CATEGORY, TEST_PER_CATEGORY, seed=5)
    return {"labels": labels, "examples": examples, "test": test}


@pytest.fixture(scope="module")
def base():
    return load_base_classifier(default_base_model())


def _frozen_probe_accuracy(hwu: dict, base) -> float:
    """Issue 19's baseline: LogisticRegression(C=10) on the frozen, normalised embeddings."""
    from sklearn.linear_model import LogisticRegression

    examples = hwu["examples"]
    probe = LogisticRegression(C=10, max_iter=2000).fit(
        base.encode([e["text"] for e in examples]).numpy(), [e["label"] for e in examples]
    )
    predicted = probe.predict(base.encode([e["text"] for e in hwu["test"]]).numpy())
    return sum(p == e["label"] for p, e in zip(predicted, hwu["test"], strict=True)) / len(
        hwu["test"]
    )


def test_the_default_method_beats_the_frozen_probe_and_is_calibrated(hwu, base, tmp_path) -> None:
    info, results = default_run(hwu, base, tmp_path / "first")
    probe = _frozen_probe_accuracy(hwu, base)

    assert results["accuracy"] > probe  # same 8 texts per scenario, same unseen test texts
    assert info["linear_head"]["descriptions_as_examples"]  # the scenario names help here
    assert results["accuracy"] > results["baseline_accuracy"] + 0.2  # zero-shot is ~0.5
    before = results["calibration_before_scaling"]["ece"]
    assert results["calibration"]["ece"] < before / 2  # the raw head is far too timid
    assert results["calibration_before_scaling"]["overconfidence"] < 0  # underconfident

    _, again = default_run(hwu, base, tmp_path / "second")
    assert again["predictions"] == results["predictions"]
    assert again["calibration"] == results["calibration"]


def test_descriptions_that_mislead_are_left_out_of_training(hwu, base, tmp_path) -> None:
    """Each scenario described by the next one's name ("alarm" described as "audio"...):
    as anchors they would pull every category towards another's texts."""
    labels = hwu["labels"]
    misleading = [
        CategorySpec(label, labels[(i + 1) % len(labels)]) for i, label in enumerate(labels)
    ]
    info, results = default_run(hwu, base, tmp_path / "misled", misleading)

    head = info["linear_head"]
    assert head["descriptions_as_examples"] is False
    assert head["loss_without_descriptions"] < head["loss_with_descriptions"]
    # What the texts alone teach: the probe's level (it too ignores the descriptions).
    assert results["accuracy"] >= _frozen_probe_accuracy(hwu, base) - 0.01
    card = (Path(info["adapter_dir"]) / "README.md").read_text()
    assert "descriptions are not among its examples" in card


def test_scenarios_with_few_corrections_are_still_recognised(hwu, base, tmp_path, monkeypatch):
    """Every other scenario keeps 3 of its 8 labelled texts, as when admins correct some
    categories far more often than others; the test texts hold every scenario equally."""
    rare = set(hwu["labels"][::2])
    seen: dict[str, int] = {}
    uneven = []
    for example in hwu["examples"]:
        seen[example["label"]] = seen.get(example["label"], 0) + 1
        if example["label"] not in rare or seen[example["label"]] <= 3:
            uneven.append(example)
    data = {**hwu, "examples": uneven}

    def recall_of_rare_scenarios(results: dict) -> float:
        pairs = [
            (predicted, e["label"])
            for predicted, e in zip(results["predictions"], hwu["test"], strict=True)
            if e["label"] in rare
        ]
        return sum(p == label for p, label in pairs) / len(pairs)

    _, weighted = default_run(data, base, tmp_path / "weighted")
    monkeypatch.setattr(linear_head, "CLASS_WEIGHT", None)  # each text weighs the same
    _, unweighted = default_run(data, base, tmp_path / "unweighted")

    # Measured: 0.765 against 0.707, and 0.810 against 0.783 over all scenarios.
    assert recall_of_rare_scenarios(weighted) > recall_of_rare_scenarios(unweighted) + 0.03
    assert weighted["accuracy"] > unweighted["accuracy"]


def test_the_head_reads_the_middle_block_where_it_helps_and_serves_what_it_was_scored_with(
    hwu, base, tmp_path, monkeypatch
) -> None:
    """hwu's scenarios are told apart by their words (alarm, weather, music): the middle
    block's pool, beside the last layer's, lowers the cross-fitted loss, so the head
    keeps it; a model loaded from disk scores exactly as the evaluation did."""
    from shared.classifier import finetuned_from_base
    from shared.classifier.artifact import read_adapter_config

    monkeypatch.setitem(embedding_trainer.RECIPE, "token_match", False)  # the block alone
    info, results = default_run(hwu, base, tmp_path / "middle")
    monkeypatch.setitem(embedding_trainer.RECIPE, "middle_layer_weight", None)
    last_info, last_only = default_run(hwu, base, tmp_path / "last")

    head = info["linear_head"]
    assert head["middle_layer"] == {"block": 3, "weight": 0.5}
    assert head["loss_with_middle_layer"] < head["loss_last_layer_only"]
    assert last_info["linear_head"]["middle_layer"] is None
    # Measured: 0.856 against 0.844 on these 667 test texts.
    assert results["accuracy"] > last_only["accuracy"]
    assert results["calibration"]["ece"] < 0.05
    _, manifest = read_adapter_config(info["adapter_dir"])
    assert manifest.format_version == 2  # an earlier Sortloop refuses it, not misreads it
    assert read_adapter_config(last_info["adapter_dir"])[1].format_version == 1

    served = finetuned_from_base(base, info["adapter_dir"], version="run-1")
    categories = [CategorySpec(label, label) for label in hwu["labels"]]
    texts = [example["text"] for example in hwu["test"]]
    assert [p.label for p in served.classify(texts, categories)] == results["predictions"]
    card = (Path(info["adapter_dir"]) / "README.md").read_text()
    assert "block 3" in card


def test_the_head_matches_words_where_held_out_texts_say_so_and_serves_what_it_was_scored_with(
    base, tmp_path, monkeypatch
) -> None:
    """At 16 texts a scenario, matching a text's tokens with each scenario's labelled
    tokens lowers the held-out loss, so the head keeps the match: it gets more test texts
    right than the same head without it, and a model loaded from disk (torch or ONNX
    Runtime) scores exactly as the evaluation did."""
    from shared.classifier import finetuned_from_base, onnx_encoder
    from shared.classifier.artifact import read_adapter_config

    labels, examples, test = labelled_slice(HWU, 16, TEST_PER_CATEGORY, seed=5)
    data = {"labels": labels, "examples": examples, "test": test}
    info, results = default_run(data, base, tmp_path / "words")
    monkeypatch.setitem(embedding_trainer.RECIPE, "token_match", False)
    plain_info, plain = default_run(data, base, tmp_path / "plain")

    head = info["linear_head"]
    assert head["token_weight"] > 0
    assert head["loss_with_token_match"] < head["cross_fitted_loss"]
    assert plain_info["linear_head"]["token_weight"] == 0
    # Measured: 0.892 against 0.885 on these 720 test texts, calibration error 0.029.
    assert results["accuracy"] > plain["accuracy"]
    assert results["calibration"]["ece"] < 0.04
    assert read_adapter_config(info["adapter_dir"])[1].format_version == 3
    assert read_adapter_config(plain_info["adapter_dir"])[1].format_version < 3

    categories = [CategorySpec(label, label) for label in labels]
    texts = [example["text"] for example in test]
    served = finetuned_from_base(base, info["adapter_dir"], version="run-1")
    assert served.token_bank is not None
    assert "word by word" in (Path(info["adapter_dir"]) / "README.md").read_text()
    assert [p.label for p in served.classify(texts, categories)] == results["predictions"]
    assert onnx_encoder.accelerate(served, tmp_path / "onnx")
    assert [p.label for p in served.classify(texts, categories)] == results["predictions"]
    # A category added since training is still scored, by its description.
    extra = [*categories, CategorySpec("gardening", "plants, seeds and watering the garden")]
    assert served.classify(["when should I water the tomato seedlings"], extra)[0].label == (
        "gardening"
    )


def _made_wrong(hwu: dict) -> tuple[list[dict], dict[str, str]]:
    """hwu's examples with 12 of 144 (8 %) labelled as the next scenario, and each of
    those ids' right label."""
    labels = hwu["labels"]
    examples = [dict(example) for example in hwu["examples"]]
    made_wrong = {}
    for example in examples[5::12]:
        made_wrong[example["id"]] = example["label"]
        example["label"] = labels[(labels.index(example["label"]) + 1) % len(labels)]
    return examples, made_wrong


def _check_the_listed(issues: list[dict], examples: list[dict], made_wrong: dict) -> list[dict]:
    """Most of the listed labels were made wrong and at least half of those are listed,
    each with its text and its label as given; returns the listed wrong ones."""
    listed_wrong = [issue for issue in issues if issue["id"] in made_wrong]
    assert len(listed_wrong) >= len(made_wrong) // 2  # at least half of them found
    assert len(listed_wrong) > len(issues) / 2  # most of what it lists was made wrong
    by_id = {example["id"]: example for example in examples}
    for issue in issues:
        assert issue["text"] == by_id[issue["id"]]["text"]
        assert issue["label"] == by_id[issue["id"]]["label"]  # the label as given
        assert issue["suggested_probability"] >= 10 * issue["label_probability"]
    return listed_wrong


def test_labels_made_wrong_are_listed_to_check_with_their_texts_and_ids(hwu, tmp_path) -> None:
    labels = hwu["labels"]
    examples, made_wrong = _made_wrong(hwu)
    info = engine.train_model(
        examples,
        [],
        TrainingConfig(method=DEFAULT_METHOD, seed=0),
        default_base_model(),
        [CategorySpec(label, label) for label in labels],
        output_dir=tmp_path / "wrong",
    )

    issues = info["label_issues"]
    listed_wrong = _check_the_listed(issues, examples, made_wrong)
    assert (
        sum(issue["suggested"] == made_wrong[issue["id"]] for issue in listed_wrong)
        > len(listed_wrong) / 2
    )  # it mostly names the scenario the text came from
    card = Path(info["adapter_dir"]) / "README.md"
    assert f"doubted {len(issues)} of its labelled texts" in card.read_text()

    clean = engine.train_model(
        hwu["examples"],
        [],
        TrainingConfig(method=DEFAULT_METHOD, seed=0),
        default_base_model(),
        [CategorySpec(label, label) for label in labels],
        output_dir=tmp_path / "clean",
    )
    assert len(clean["label_issues"]) <= 6  # the labels as the dataset gives them: few doubted


def test_a_lora_run_lists_the_labels_its_frozen_encoder_doubted(hwu, tmp_path) -> None:
    """The adapter trains on the labelled texts, so the tuned head finds their labels easy
    to believe: the labels to check come from the frozen encoder's head, fitted first."""
    examples, made_wrong = _made_wrong(hwu)
    info = engine.train_model(
        examples,
        [],
        TrainingConfig(method="lora", seed=0),
        default_base_model(),
        [CategorySpec(label, label) for label in hwu["labels"]],
        output_dir=tmp_path / "lora",
    )
    assert info["best_epoch"] > 0  # the adapter moved
    _check_the_listed(info["label_issues"], examples, made_wrong)
