"""The NLI path trains end to end on a tiny random BART (LoRA on q_proj/v_proj)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from shared.classifier import CategorySpec, load_finetuned_classifier  # noqa: E402
from shared.training_config import TrainingConfig  # noqa: E402
from worker.fine_tuning import engine  # noqa: E402

CATEGORIES = [CategorySpec("roads", "roads and potholes"), CategorySpec("parks", "parks and trees")]


def _examples(prefix: str) -> list[dict]:
    rows = []
    for index in range(6):
        rows.append(
            {
                "id": f"{prefix}r{index}",
                "text": f"pothole number {index} on the road",
                "label": "roads",
            }
        )
        rows.append(
            {
                "id": f"{prefix}p{index}",
                "text": f"the park tree {index} fell down",
                "label": "parks",
            }
        )
    return rows


@pytest.mark.parametrize("method", ["lora", "head"])
def test_nli_model_trains_exports_and_reloads(tiny_bart, tmp_path, method) -> None:
    config = TrainingConfig(method=method, epochs=3, batch_size=4, learning_rate=5e-4)
    info = engine.train_model(
        _examples("t"),
        _examples("v")[:4],
        config,
        tiny_bart,
        CATEGORIES,
        output_dir=tmp_path / "adapter",
    )
    assert info["kind"] == "nli"
    assert info["train_loss"][-1] < info["train_loss"][0] + 1.0
    adapter_config = json.loads(Path(info["adapter_dir"], "adapter_config.json").read_text())
    if method == "lora":
        assert sorted(adapter_config["target_modules"]) == ["q_proj", "v_proj"]
    # NLI lora adapts every block; head retrains the classification head only.
    assert info["adapted_blocks"] == ("every block" if method == "lora" else "no block")
    results = engine.evaluate_model(info["adapter_dir"], tiny_bart, _examples("e"), CATEGORIES)
    assert 0.0 <= results["accuracy"] <= 1.0 and "verdict" in results
    reloaded = load_finetuned_classifier(tiny_bart, info["adapter_dir"], version="run-9")
    assert reloaded.kind == "nli"
    predicted = [
        p.label for p in reloaded.classify([e["text"] for e in _examples("e")], CATEGORIES)
    ]
    assert predicted == results["predictions"]


@pytest.fixture(scope="module")
def tiny_bart_without_dropout(tiny_bart, tmp_path_factory) -> str:
    """The tiny BART with its dropout off (a copy: the shared fixture is left alone)."""
    path = tmp_path_factory.mktemp("bart-no-dropout") / "model"
    shutil.copytree(tiny_bart, path)
    config = json.loads((path / "config.json").read_text())
    config["dropout"] = 0.0  # so that both runs below are deterministic functions of the data
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_gradient_accumulation_trains_like_one_larger_batch(
    tiny_bart_without_dropout, tmp_path
) -> None:
    from shared.classifier.artifact import read_adapter_tensors

    def train(batch_size: int, accumulation: int) -> tuple[dict, dict]:
        config = TrainingConfig(
            method="lora",
            epochs=2,
            batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            lora_dropout=0.0,
            learning_rate=5e-4,
        )
        info = engine.train_model(
            _examples("t"),
            [],
            config,
            tiny_bart_without_dropout,
            CATEGORIES,
            output_dir=tmp_path / f"{batch_size}x{accumulation}",
        )
        return info, read_adapter_tensors(info["adapter_dir"])

    large_info, large = train(batch_size=6, accumulation=1)
    accumulated_info, accumulated = train(batch_size=3, accumulation=2)
    single_info, single = train(batch_size=3, accumulation=1)
    assert large_info["steps"] == accumulated_info["steps"] == 4  # 12 texts / 6, 2 epochs
    assert single_info["steps"] == 8
    lora_keys = [key for key in large if "lora_" in key]
    assert lora_keys
    for key in lora_keys:
        assert torch.allclose(large[key], accumulated[key], atol=1e-5), key
    assert any(not torch.allclose(large[key], single[key], atol=1e-5) for key in lora_keys)
