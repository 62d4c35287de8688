"""The engine end to end on a real slice of banking.csv and on a tiny random BART."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from shared.classifier import (  # noqa: E402
    CategorySpec,
    default_base_model,
    load_finetuned_classifier,
)
from shared.training_config import TrainingConfig  # noqa: E402
from tests.conftest import SHARED_DATA, labelled_slice  # noqa: E402
from worker.fine_tuning import engine  # noqa: E402
from worker.fine_tuning.trainer import TrainingCancelled  # noqa: E402

BANKING = SHARED_DATA / "banking.csv"  # tests may read ../shared/data; a missing file fails


@pytest.fixture(scope="module")
def banking() -> dict:
    """8 training examples per category and a 25-per-category test slice."""
    labels, examples, test = labelled_slice(BANKING, 8, 25, seed=7)
    checked = engine.validate(examples, (0.85, 0.15, 0.0), seed=0)
    return {
        "categories": [CategorySpec(label, label) for label in labels],
        "train": engine.examples_by_ids(examples, checked["split"]["train"]),
        "val": engine.examples_by_ids(examples, checked["split"]["val"]),
        "test": test,
    }


def _train_and_evaluate(
    banking: dict, tmp_path: Path, method: str, **overrides
) -> tuple[dict, dict]:
    config = TrainingConfig(method=method, seed=0, **overrides)
    info = engine.train_model(
        banking["train"],
        banking["val"],
        config,
        default_base_model(),
        banking["categories"],
        output_dir=tmp_path / method,
    )
    results = engine.evaluate_model(
        info["adapter_dir"], default_base_model(), banking["test"], banking["categories"]
    )
    return info, results


@pytest.fixture(scope="module")
def lora_run(banking, tmp_path_factory) -> tuple[dict, dict]:
    return _train_and_evaluate(banking, tmp_path_factory.mktemp("lora"), "lora")


def test_lora_beats_the_zero_shot_base_with_eight_per_category(lora_run, banking) -> None:
    info, results = lora_run
    assert results["accuracy"] > results["baseline_accuracy"] + 0.03
    assert results["num_test"] == 200
    assert info["epochs_run"] >= 1 and info["train_loss"]
    # The verdict says how sure the test set is, from the very predictions it scored.
    truth = [example["label"] for example in banking["test"]]
    pairs = list(zip(truth, results["predictions"], results["baseline_predictions"], strict=True))
    fixed = sum(1 for t, tuned, base in pairs if tuned == t != base)
    broken = sum(1 for t, tuned, base in pairs if base == t != tuned)
    assert fixed - broken == round((results["accuracy"] - results["baseline_accuracy"]) * 200)
    verdict = results["verdict"]
    assert results["mcnemar_p_value"] == verdict["p_value"]
    assert verdict["significant"] == (verdict["p_value"] < 0.05)
    # Calibration of both models on the same texts.
    for key in ("calibration", "baseline_calibration"):
        assert sum(row["count"] for row in results[key]["bins"]) == 200
        assert 0 <= results[key]["ece"] <= 1
    assert results["calibration"]["ece"] < results["baseline_calibration"]["ece"]
    assert any(
        f"on 200 test texts the fine-tuned model got {fixed} right" in reason
        and f"and {broken} wrong that it got right" in reason
        for reason in verdict["reasons"]
    )


def test_export_loads_back_and_predicts_the_same_labels(lora_run, banking) -> None:
    info, results = lora_run
    directory = Path(info["adapter_dir"])
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "metrics.json",
        "training_data.json",
        "README.md",
        "tokenizer.json",
    } <= {p.name for p in directory.iterdir()}
    config = json.loads((directory / "adapter_config.json").read_text())
    assert config["sortloop"]["base_model"] == "all-MiniLM-L6-v2"
    assert config["sortloop"]["labels"] == [c.name for c in banking["categories"]]
    assert config["target_modules"] and config["r"] == 8
    reloaded = load_finetuned_classifier(default_base_model(), directory, version="run-1")
    predicted = [
        p.label
        for p in reloaded.classify([e["text"] for e in banking["test"]], banking["categories"])
    ]
    assert predicted == results["predictions"]
    assert reloaded.version == "run-1"


def test_categories_the_adapter_never_saw_are_scored_zero_shot(lora_run, banking) -> None:
    info, _ = lora_run
    reloaded = load_finetuned_classifier(default_base_model(), info["adapter_dir"], version="run-1")
    categories = [
        *banking["categories"][:3],
        CategorySpec("mortgages", "mortgage and home loan questions"),
    ]
    prediction = reloaded.classify(
        ["what interest rate do you offer on a home loan mortgage"], categories
    )[0]
    assert set(prediction.scores) == {c.name for c in categories}
    assert prediction.label == "mortgages"


@pytest.fixture(scope="module")
def head_run(banking, tmp_path_factory) -> tuple[dict, dict]:
    return _train_and_evaluate(banking, tmp_path_factory.mktemp("head"), "head")


@pytest.fixture(scope="module")
def last_layer_head_run(banking, tmp_path_factory) -> tuple[dict, dict]:
    """Method head reading the last layer alone, as lora does: what a lora run whose
    adapter never beat the frozen encoder must reproduce."""
    from worker.fine_tuning import embedding_trainer

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(embedding_trainer.RECIPE, "middle_layer_weight", None)
        return _train_and_evaluate(banking, tmp_path_factory.mktemp("last"), "head")


def test_head_method_is_deterministic_for_a_seed(head_run, banking, tmp_path) -> None:
    _, first = head_run
    _, second = _train_and_evaluate(banking, tmp_path / "b", "head")
    assert first["accuracy"] == second["accuracy"]
    assert first["per_category_f1"] == second["per_category_f1"]
    assert first["accuracy"] > first["baseline_accuracy"]


def test_the_model_in_use_is_scored_on_the_test_texts_it_did_not_train_on(
    lora_run, head_run, banking, tmp_path
) -> None:
    # The head model is "in use"; the lora model would replace it. Ten texts the head
    # model trained on join the test set: it holds them as exemplars, so they are left
    # out of the comparison and it is scored on the same 200 texts as before.
    (lora_info, lora_results), (head_info, head_results) = lora_run, head_run
    in_use = {"run_id": 3, "version": "run-3", "dir": head_info["adapter_dir"]}
    results = engine.evaluate_model(
        lora_info["adapter_dir"],
        default_base_model(),
        banking["test"] + banking["train"][:10],
        banking["categories"],
        in_use=in_use,
        write=False,
    )
    compared = results["in_use"]
    assert results["num_test"] == 210
    assert (compared["run_id"], compared["version"], compared["num_test"]) == (3, "run-3", 200)
    assert compared["accuracy"] == head_results["accuracy"]
    assert compared["new_accuracy"] == lora_results["accuracy"]
    gained = compared["new_right"] - compared["in_use_right"]
    assert gained == round((lora_results["accuracy"] - head_results["accuracy"]) * 200)
    assert compared["new_is_better"] == (gained > 0)
    assert 0 < compared["p_value"] <= 1

    gone = engine.evaluate_model(
        lora_info["adapter_dir"],
        default_base_model(),
        banking["test"][:20],
        banking["categories"],
        in_use={**in_use, "dir": str(tmp_path / "missing")},
        write=False,
    )
    assert "cannot read adapter" in gone["in_use"]["error"]
    assert "new_is_better" not in gone["in_use"]


def test_lora_keeps_the_head_start_when_no_adapter_epoch_beats_it(
    head_run, last_layer_head_run, banking, tmp_path
) -> None:
    # A learning rate 1000x the nominal one wrecks the encoder in the first epoch, so
    # the validation loss never beats the start (the head fitted on the frozen encoder).
    info, results = _train_and_evaluate(banking, tmp_path, "lora", lora_lr_multiplier=1000.0)
    assert info["best_epoch"] == 0 and info["epochs_run"] >= 1
    assert min(info["val_loss"]) > info["start_val_loss"]
    assert results["predictions"] == last_layer_head_run[1]["predictions"]
    assert results["accuracy"] == last_layer_head_run[1]["accuracy"]
    card = (Path(info["adapter_dir"]) / "README.md").read_text()
    assert "No adapter epoch beat it on the validation set" in card
    head = info["linear_head"]
    assert head["calibration_folds"] == 8  # 8 labelled texts per category
    # head: one validation point, the head fitted on the training texts alone
    assert len(head_run[0]["val_loss"]) == 1 and 0 < head_run[0]["val_accuracy"][0] <= 1
    assert (
        f"calibrated by a temperature of {head['temperature']} fitted on 8-fold cross-fitted"
        in card
    )
    # 8 per category: the fast recipe, LoRA on the top block only.
    assert info["adapted_blocks"] == "top block"
    assert "LoRA adapts the top block of the model." in card


def test_an_adapter_that_memorised_its_texts_gets_the_frozen_encoders_confidence(
    last_layer_head_run, banking, tmp_path
) -> None:
    # 100x the nominal learning rate: the adapter learns its 7 texts per category by
    # heart (validation still improves at first, so an epoch is kept). Each fold of the
    # head then finds its held-out texts trivial: the cross-fitted multiplier explodes.
    info, results = _train_and_evaluate(banking, tmp_path, "lora", lora_lr_multiplier=100.0)
    assert info["best_epoch"] >= 1
    head = info["linear_head"]
    # same texts, frozen encoder read as lora reads it, seed 0
    frozen = last_layer_head_run[0]["linear_head"]["calibration"]
    assert head["calibration"] == frozen
    assert head["uncapped_calibration"] > 10 * frozen
    card = (Path(info["adapter_dir"]) / "README.md").read_text()
    assert "so the temperature is the frozen base model's" in card
    # The stored confidence does not say "sure" of every text (uncapped, all 200 of
    # them would sit in the top bin).
    bins = results["calibration"]["bins"]
    assert sum(row["count"] for row in bins if row["to"] <= 0.9) > 200 / 4


def test_progress_is_reported_and_cancel_stops_training(banking, tmp_path) -> None:
    calls = []

    def progress(stage, step, total_steps, epoch, loss, eta_seconds) -> None:
        calls.append((stage, step, total_steps))

    with pytest.raises(TrainingCancelled):
        engine.train_model(
            banking["train"],
            banking["val"],
            TrainingConfig(method="lora", epochs=1),
            default_base_model(),
            banking["categories"],
            progress=progress,
            should_cancel=lambda: bool(calls) and calls[-1][1] >= 1,
            output_dir=tmp_path / "cancelled",
        )
    assert ("training", 1, calls[-1][2]) in calls
    assert not (tmp_path / "cancelled").exists()


def test_publish_is_an_atomic_rename(banking, tmp_path) -> None:
    staging = engine.staging_directory(tmp_path, 5)
    engine.train_model(
        banking["train"],
        banking["val"],
        TrainingConfig(method="head", epochs=1),
        default_base_model(),
        banking["categories"],
        output_dir=staging,
    )
    published = Path(engine.publish_model(staging, tmp_path, 5))
    assert published == tmp_path / "finetuned" / "run_5"
    assert (published / "adapter_model.safetensors").is_file() and not staging.exists()
    assert not [p for p in published.parent.iterdir() if p.name.startswith(".")]


LONG_TEXT = (
    "I have been waiting for my replacement card for three weeks now and nobody at the "
    "branch could tell me where it is. I called twice and both times I was told it had "
    "been dispatched, but the tracking number does not work and the app still says the "
    "card is being prepared, which is not acceptable because I need it to pay my rent."
)


CARDS_AND_TRANSFERS = [
    CategorySpec("cards", "card delivery, lost or stolen cards"),
    CategorySpec("transfers", "sending and receiving money"),
]


@pytest.fixture(scope="module")
def base_classifier():
    from shared.classifier import load_base_classifier

    return load_base_classifier(default_base_model())


def _fine_tuned_on(texts: list[tuple[str, str]], config, base, output_dir: Path):
    """The fine-tuned classifier trained on ``texts`` (no validation set), on ``base``."""
    from shared.classifier import finetuned_from_base

    examples = [{"id": i, "text": text, "label": label} for i, (text, label) in enumerate(texts)]
    info = engine.train_model(
        examples, [], config, default_base_model(), CARDS_AND_TRANSFERS, output_dir=output_dir
    )
    return finetuned_from_base(base, info["adapter_dir"], version="run-1")


def _capturing_head_fits(monkeypatch) -> list:
    """Record the embeddings each logistic head is fitted on."""
    from worker.fine_tuning import linear_head

    fitted, original = [], linear_head.fit_linear_head

    def capture(embeddings, classes, descriptions, **options):
        fitted.append(embeddings)
        return original(embeddings, classes, descriptions, **options)

    monkeypatch.setattr(linear_head, "fit_linear_head", capture)
    return fitted


@pytest.mark.parametrize("method", ["head", "lora"])
def test_a_long_labelled_text_trains_the_head_as_the_classifier_sees_it(
    method, base_classifier, tmp_path, monkeypatch
) -> None:
    # Training cuts texts at max_length tokens (64 by default); the classifier embeds a
    # query up to 256. The head must be fitted on the text as the classifier sees it.
    texts = [
        ("my card has not arrived yet", "cards"),
        ("I lost my debit card on the bus", "cards"),
        (LONG_TEXT, "cards"),
        ("how do I send money abroad", "transfers"),
        ("my transfer is still pending", "transfers"),
        ("the money I sent never arrived", "transfers"),
    ]
    fitted = _capturing_head_fits(monkeypatch)
    config = TrainingConfig(method=method, seed=0, epochs=2)
    assert len(base_classifier.tokenizer(LONG_TEXT)["input_ids"]) > config.max_length
    tuned = _fine_tuned_on(texts, config, base_classifier, tmp_path / "a")

    served = tuned.encode([LONG_TEXT])[0].double().numpy()
    # The fit on the features the classifier reads (head may add a middle block's).
    trained = next(row[2] for row in reversed(fitted) if row.shape[1] == served.shape[0])
    similarity = float(served @ trained / (np.linalg.norm(served) * np.linalg.norm(trained)))

    assert similarity == pytest.approx(1.0, abs=1e-4)
    assert tuned.classify([LONG_TEXT], CARDS_AND_TRANSFERS)[0].label == "cards"


def test_the_head_sees_texts_cut_where_the_classifier_cuts_even_with_a_larger_training_cap(
    base_classifier, tmp_path, monkeypatch
) -> None:
    from shared.classifier.embedding import MAX_LENGTH

    very_long = " ".join([LONG_TEXT] * 5)
    texts = [("my card is lost", "cards"), (very_long, "cards"), ("send money", "transfers")]
    fitted = _capturing_head_fits(monkeypatch)
    config = TrainingConfig(method="lora", seed=0, epochs=1, max_length=512)
    assert len(base_classifier.tokenizer(very_long)["input_ids"]) > MAX_LENGTH
    tuned = _fine_tuned_on(texts, config, base_classifier, tmp_path / "a")

    similarity = float(tuned.encode([very_long])[0] @ fitted[-1][1])

    assert similarity == pytest.approx(1.0, abs=1e-4)


def test_lora_weighs_every_category_the_same_however_many_texts_it_has() -> None:
    import torch

    from worker.fine_tuning.embedding_trainer import balanced_weights

    uneven = balanced_weights(torch.tensor([0, 0, 0, 1]), 3)  # category 2: no texts
    assert torch.allclose(uneven, torch.tensor([4 / 6, 2.0, 0.0]))
    # the weighted texts of each category add up to the same total
    assert torch.isclose(uneven[0] * 3, uneven[1] * 1)
    assert torch.equal(balanced_weights(torch.tensor([0, 1, 2, 0, 1, 2]), 3), torch.ones(3))
