"""Where training runs: the device option, the GPU's token-budget batcher, the GPU recipe on CPU.

No GPU here: the CUDA-only parts (bf16 body + fp32 adapter, token-budget
batches) are exercised on the CPU by switching the recipe on, and the real GPU
numbers come from ``bench/gpu_training.py``.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from shared.classifier import CategorySpec, load_finetuned_classifier  # noqa: E402
from shared.training_config import TrainingConfig  # noqa: E402
from worker.fine_tuning import devices, engine  # noqa: E402

CATEGORIES = [CategorySpec("roads", "roads and potholes"), CategorySpec("parks", "parks and trees")]


def _examples(prefix: str, count: int = 6) -> list[dict]:
    rows = []
    for index in range(count):
        rows.append(
            {"id": f"{prefix}r{index}", "text": f"pothole {index} on the road", "label": "roads"}
        )
        rows.append(
            {
                "id": f"{prefix}p{index}",
                "text": f"the park tree {index} fell down",
                "label": "parks",
            }
        )
    return rows


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda"])
def test_the_device_option_accepts_auto_cpu_and_cuda(device: str) -> None:
    config = TrainingConfig(device=device)
    assert TrainingConfig.from_dict(config.to_dict()).device == device


@pytest.mark.parametrize(
    ("field", "value"), [("device", "gpu"), ("device", ""), ("max_batch_tokens", 0)]
)
def test_bad_device_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        TrainingConfig(**{field: value})


def test_auto_means_cpu_without_a_gpu_and_cuda_is_refused_clearly(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device("auto") == "cpu"
    assert devices.resolve_device(None) == "cpu"
    with pytest.raises(devices.DeviceUnavailable, match="no CUDA GPU"):
        devices.resolve_device("cuda")


def test_token_budget_batches_cover_every_example_once_within_the_budget() -> None:
    lengths = [5, 40, 12, 12, 7, 33, 20, 9, 18, 25, 11, 6, 300, 14, 16, 8] * 4
    budget = 256
    for epoch_seed in (1, 2):
        batches = devices.token_budget_batches(lengths, budget, seed=epoch_seed)
        flat = [index for batch in batches for index in batch]
        assert Counter(flat) == Counter(range(len(lengths)))  # each exactly once
        for batch in batches:
            cost = len(batch) * max(lengths[index] for index in batch)
            assert cost <= budget or len(batch) == 1  # only a lone over-long text exceeds it
        for batch in batches:
            if any(lengths[index] == 300 for index in batch):
                assert len(batch) == 1


def test_token_budget_batches_are_deterministic_for_a_seed_and_count_nli_pairs() -> None:
    lengths = [(index * 7) % 30 + 3 for index in range(50)]
    first = devices.token_budget_batches(lengths, 512, seed=3)
    assert first == devices.token_budget_batches(lengths, 512, seed=3)
    assert first != devices.token_budget_batches(lengths, 512, seed=4)
    pairs = devices.token_budget_batches(lengths, 512, seed=3, cost_multiplier=8)
    assert len(pairs) > len(first)  # 8 categories: each text costs 8 sequences
    for batch in pairs:
        assert len(batch) * 8 * max(lengths[i] for i in batch) <= 512 or len(batch) == 1


def test_training_info_reports_the_cpu_device(tmp_path) -> None:
    from shared.classifier import default_base_model

    info = engine.train_model(
        _examples("t"),
        _examples("v", 2),
        TrainingConfig(method="head", epochs=2, device="auto"),
        default_base_model(),
        CATEGORIES,
        output_dir=tmp_path / "adapter",
    )
    assert info["device"] == "cpu"
    assert info["peak_gpu_memory_mb"] is None
    results = engine.evaluate_model(
        info["adapter_dir"], default_base_model(), _examples("e"), CATEGORIES
    )
    assert results["eval_device"] == "cpu"


@pytest.fixture
def gpu_recipe_on_cpu(monkeypatch) -> None:
    """Run the GPU recipe (bf16 frozen body, token-budget batches) on the CPU."""
    monkeypatch.setattr(devices, "gpu_recipe", lambda device: True)


@pytest.mark.parametrize("method", ["lora", "head"])
def test_gpu_recipe_trains_a_bf16_body_with_fp32_trainables_and_exports_fp32(
    gpu_recipe_on_cpu, tiny_bart, tmp_path, method
) -> None:
    config = TrainingConfig(method=method, epochs=2, max_batch_tokens=400, device="cpu")
    info = engine.train_model(
        _examples("t"), _examples("v", 2), config, tiny_bart, CATEGORIES, output_dir=tmp_path / "a"
    )
    # 12 texts x 2 categories x ~20 tokens do not fit one 400-token step.
    assert info["steps"] > 2
    tensors = load_file(f"{info['adapter_dir']}/adapter_model.safetensors")
    assert tensors and all(t.dtype == torch.float32 for t in tensors.values())
    reloaded = load_finetuned_classifier(tiny_bart, info["adapter_dir"], version="gpu-recipe")
    assert len(reloaded.classify(["a pothole again"], CATEGORIES)) == 1


def test_gpu_recipe_embeddings_come_back_in_text_order(
    gpu_recipe_on_cpu, tmp_path, monkeypatch
) -> None:
    from shared.classifier import default_base_model, load_base_classifier
    from worker.fine_tuning import linear_head

    fitted, original = [], linear_head.fit_linear_head

    def capture(embeddings, classes, descriptions, **options):
        fitted.append(torch.as_tensor(embeddings))
        return original(embeddings, classes, descriptions, **options)

    monkeypatch.setattr(linear_head, "fit_linear_head", capture)

    texts = {
        "roads": [
            "pothole",
            "the asphalt on main street is cracked and broken in many places",
            "traffic light at the corner is out",
            "a lorry lost its load on the motorway near the exit this morning, lanes blocked",
        ],
        "parks": [
            "swings",
            "the big oak tree in the central park fell over during the storm last night",
            "grass needs mowing",
            "dogs off the lead in the playground scare the children, please put up signs there",
        ],
    }
    train = [
        {"id": f"{label}{i}", "text": text, "label": label}
        for label, group in texts.items()
        for i, text in enumerate(group)
    ]
    config = TrainingConfig(method="head", epochs=1, max_batch_tokens=64, device="cpu")
    info = engine.train_model(
        train, [], config, default_base_model(), CATEGORIES, output_dir=tmp_path / "a"
    )
    head = load_file(f"{info['adapter_dir']}/adapter_model.safetensors")
    assert head["sortloop_head.linear_weight"].dtype == torch.float32
    reference = load_base_classifier(default_base_model()).encode([e["text"] for e in train])
    # The head is fitted on the texts' embeddings: bf16 body vs fp32 reference, row i is text i.
    # (The first fit reads the last layer alone; the second adds a middle block's pool.)
    similarity = fitted[0].float() @ reference.T
    assert similarity.argmax(dim=1).tolist() == list(range(len(train)))
    assert float(similarity.diagonal().min()) > 0.98


@pytest.mark.parametrize("method", ["lora", "head"])
def test_gpu_recipe_keeps_frozen_weights_in_bf16_and_trainables_in_fp32(
    gpu_recipe_on_cpu, tiny_bart, method
) -> None:
    from worker.fine_tuning.nli_trainer import NLITrainer

    trainer = NLITrainer(tiny_bart, CATEGORIES, TrainingConfig(method=method), "cpu")
    parameters = list(trainer.model.named_parameters())
    trainable = {p.dtype for _, p in parameters if p.requires_grad}
    frozen = {p.dtype for _, p in parameters if not p.requires_grad}
    assert trainable == {torch.float32}
    assert frozen == {torch.bfloat16}
