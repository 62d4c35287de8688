"""The NLI path trains end to end on a tiny random BART (LoRA on q_proj/v_proj)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from shared.classifier import CategorySpec, load_finetuned_classifier  # noqa: E402
from shared.training_config import TrainingConfig  # noqa: E402
from worker.fine_tuning import engine  # noqa: E402

CATEGORIES = [CategorySpec("roads", "roads and potholes"), CategorySpec("parks", "parks and trees")]


@pytest.fixture(scope="module")
def tiny_bart(tmp_path_factory) -> str:
    from shared.classifier.tiny import build_tiny_nli_model

    return build_tiny_nli_model(tmp_path_factory.mktemp("bart"))


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
    results = engine.evaluate_model(info["adapter_dir"], tiny_bart, _examples("e"), CATEGORIES)
    assert 0.0 <= results["accuracy"] <= 1.0 and "verdict" in results
    reloaded = load_finetuned_classifier(tiny_bart, info["adapter_dir"], version="run-9")
    assert reloaded.kind == "nli"
    predicted = [
        p.label for p in reloaded.classify([e["text"] for e in _examples("e")], CATEGORIES)
    ]
    assert predicted == results["predictions"]
