"""The embedding lora recipe: LoRA on the top block (its frozen bottom runs once) for few
examples, on every block for many; SupCon fade; epochs capped in steps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from shared.classifier import (  # noqa: E402
    CategorySpec,
    default_base_model,
    finetuned_from_base,
    load_base_classifier,
)
from shared.classifier.artifact import untouched_bottom_layers  # noqa: E402
from shared.classifier.embedding import encode_both  # noqa: E402
from shared.training_config import TrainingConfig  # noqa: E402
from worker.fine_tuning import engine  # noqa: E402
from worker.fine_tuning.embedding_trainer import EmbeddingTrainer  # noqa: E402
from worker.fine_tuning.trainer import _collate, prepare_dataset  # noqa: E402

CATEGORIES = [
    CategorySpec("cards", "card delivery, lost or stolen cards"),
    CategorySpec("transfers", "sending and receiving money"),
]
EXAMPLES = [
    ("my card has not arrived yet", "cards"),
    ("I lost my debit card on the bus", "cards"),
    ("how long does a new card take to be delivered", "cards"),
    ("someone stole my card, please block it", "cards"),
    ("how do I send money to my brother abroad", "transfers"),
    ("my transfer to a friend is still pending", "transfers"),
    ("can I receive a payment from another bank", "transfers"),
    ("the money I sent never reached the recipient", "transfers"),
]
TEXTS = [
    "where is my new card",
    "I want to wire money to Spain",
    "card got stolen yesterday evening at the station",
    "hi",
]


def _examples() -> list[dict]:
    return [{"id": i, "text": text, "label": label} for i, (text, label) in enumerate(EXAMPLES)]


@pytest.fixture(scope="module")
def lora_adapter(tmp_path_factory) -> str:
    examples = _examples()
    # No validation set: the last epoch is kept, so the adapter surely moved.
    info = engine.train_model(
        examples,
        [],
        TrainingConfig(method="lora", seed=0, epochs=2),
        default_base_model(),
        CATEGORIES,
        output_dir=tmp_path_factory.mktemp("prefix") / "adapter",
    )
    return info["adapter_dir"]


def test_lora_adapts_only_the_top_blocks(lora_adapter) -> None:
    from shared.classifier import artifact

    tensors = artifact.read_adapter_tensors(lora_adapter)
    lora, head = artifact.split_tensors(tensors)
    blocks = {key.split(".layer.")[1].split(".")[0] for key in lora}
    assert blocks == {"5"}  # all-MiniLM-L6-v2 has 6 blocks; the recipe adapts the top one
    assert untouched_bottom_layers(lora, head) == 5


def test_shared_bottom_encoding_matches_two_full_passes(lora_adapter) -> None:
    base = load_base_classifier(default_base_model())
    tuned = finetuned_from_base(base, lora_adapter, version="run-1")
    assert tuned.shared_layers == 5
    base_shared, tuned_shared = encode_both(base, tuned, TEXTS)
    assert torch.allclose(base_shared, base.encode(TEXTS), atol=1e-5)
    assert torch.allclose(tuned_shared, tuned.encode(TEXTS), atol=1e-5)
    assert not torch.allclose(tuned_shared, base_shared, atol=1e-3)  # the adapter did change them


def test_cached_prefix_gives_the_embeddings_of_a_full_forward() -> None:
    trainer = EmbeddingTrainer(
        default_base_model(), CATEGORIES, TrainingConfig(method="lora", seed=0)
    )
    trainer.setup_adapter(per_category=7)
    assert trainer.frozen_layers == 5
    with torch.no_grad():  # make the adapter non-trivial (peft starts B at zero)
        for name, parameter in trainer.encoder.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    dataset = prepare_dataset(TEXTS, [0, 1, 0, 1], trainer.tokenizer, 64)
    pad_id = trainer.tokenizer.pad_token_id
    trainer._cache_prefix(dataset, pad_id)
    trainer.set_mode(False)
    with torch.no_grad():
        for indices in ([0, 1, 2, 3], [3, 0], [2]):
            cached = trainer.collate(dataset, indices, pad_id)
            assert "prefix" in cached
            full = _collate(dataset, indices, pad_id)
            assert torch.allclose(trainer._embed(cached), trainer._embed(full), atol=1e-5)


def test_whole_dataset_embeddings_come_back_in_dataset_order() -> None:
    # No-gradient batches go shortest first (less padding); results must not move.
    trainer = EmbeddingTrainer(
        default_base_model(), CATEGORIES, TrainingConfig(method="head", seed=0)
    )
    dataset = prepare_dataset(TEXTS, [0, 1, 0, 1], trainer.tokenizer, 64)
    pad_id = trainer.tokenizer.pad_token_id
    assert trainer.eval_batches(dataset) == [[3, 0, 1, 2]]  # "hi" first, the longest last
    together = trainer._embed_all(dataset, pad_id)
    with torch.no_grad():
        alone = torch.cat([trainer._embed(_collate(dataset, [i], pad_id)) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_head_and_unknown_architectures_have_nothing_to_share() -> None:
    assert untouched_bottom_layers({}, {"exemplars": torch.zeros(1, 2)}) == 0
    key = "base_model.model.pooler.dense.lora_A.weight"
    assert untouched_bottom_layers({key: torch.zeros(1)}, {}) == 0
    trainer = EmbeddingTrainer(
        default_base_model(), CATEGORIES, TrainingConfig(method="head", seed=0)
    )
    assert trainer.frozen_layers == 0


def test_the_contrastive_term_fades_as_categories_get_more_examples() -> None:
    from worker.fine_tuning.embedding_trainer import RECIPE, supcon_weight

    full = RECIPE["supcon_weight"]
    assert supcon_weight([0] * 7 + [1] * 7) == full
    assert supcon_weight([0] * 3 + [1] * 3) == full
    assert supcon_weight([0] * 28 + [1] * 28) == full * (7 / 28) ** 2
    assert supcon_weight([]) == 0.0


def test_a_lora_epoch_takes_at_most_eight_steps_until_batches_reach_their_cap() -> None:
    # Tuned at 8 per category (4-5 steps an epoch); with 64 per category and 16 texts a
    # batch, an epoch of 30+ steps at the same rate moved the adapter so far that it
    # lost to head (bench/README.md). Larger sets get larger batches instead, up to a
    # cap that bounds the memory of backprop through every block.
    from worker.fine_tuning.embedding_trainer import RECIPE

    steps = RECIPE["steps_per_epoch"]
    lora = EmbeddingTrainer(
        default_base_model(), CATEGORIES, TrainingConfig(method="lora", seed=0, batch_size=16)
    )
    assert lora.batches_per_epoch(56) == 4  # small sets keep the configured batch size
    assert lora.batch_size(56) == 16
    assert lora.batches_per_epoch(435) == steps and lora.batch_size(435) > 16
    generator = torch.Generator().manual_seed(0)
    batches = lora.epoch_batches(list(range(500)), 1, generator)
    assert len(batches) == steps
    assert sorted(i for batch in batches for i in batch) == list(range(500))
    # 2000 texts: 8 steps would take 250 texts a batch; the cap holds it at 64.
    cap = RECIPE["max_cpu_batch"]
    batches = lora.epoch_batches(list(range(2000)), 1, generator)
    assert max(len(batch) for batch in batches) == cap
    assert len(batches) == -(-2000 // cap)
    assert sorted(i for batch in batches for i in batch) == list(range(2000))
    head = EmbeddingTrainer(
        default_base_model(), CATEGORIES, TrainingConfig(method="head", seed=0, batch_size=16)
    )
    assert head.batch_size(435) == 16


def test_with_many_examples_per_category_every_block_adapts(tmp_path) -> None:
    from shared.classifier import artifact
    from worker.fine_tuning.embedding_trainer import RECIPE

    many = RECIPE["all_layers_from_per_category"]
    assert many > 7  # 8 per category (7 to train on) keeps the fast top-block recipe
    trainer = EmbeddingTrainer(
        default_base_model(), CATEGORIES, TrainingConfig(method="lora", seed=0)
    )
    trainer.setup_adapter(per_category=many)
    assert trainer.frozen_layers == 0
    assert trainer.adapter_lr_multiplier == RECIPE["all_layers_lr_multiplier"]
    chosen = EmbeddingTrainer(
        default_base_model(),
        CATEGORIES,
        TrainingConfig(method="lora", seed=0, lora_lr_multiplier=2.0),
    )
    chosen.setup_adapter(per_category=many)
    assert chosen.adapter_lr_multiplier == 2.0  # the admin's choice wins

    # A real run with 24 texts per category: the export adapts all 6 blocks, and the
    # classifier that loads it shares no frozen bottom with the base model.
    variants = ["", " please", " today", " asap", " again", " now"]
    examples = [
        {"id": f"{i}-{j}", "text": text + suffix, "label": label}
        for i, (text, label) in enumerate(EXAMPLES)
        for j, suffix in enumerate(variants)
    ]
    assert len(examples) / len(CATEGORIES) >= many
    info = engine.train_model(
        examples,
        [],
        TrainingConfig(method="lora", seed=0, epochs=1),
        default_base_model(),
        CATEGORIES,
        output_dir=tmp_path / "adapter",
    )
    assert info["adapted_blocks"] == "every block"
    card = (Path(info["adapter_dir"]) / "README.md").read_text()
    assert "LoRA adapts every block of the model." in card
    lora, head = artifact.split_tensors(artifact.read_adapter_tensors(info["adapter_dir"]))
    blocks = {key.split(".layer.")[1].split(".")[0] for key in lora}
    assert blocks == {str(i) for i in range(6)}
    assert untouched_bottom_layers(lora, head) == 0
    base = load_base_classifier(default_base_model())
    tuned = finetuned_from_base(base, info["adapter_dir"], version="run-2")
    assert tuned.shared_layers == 0
    base_shared, tuned_shared = encode_both(base, tuned, TEXTS)
    assert torch.allclose(tuned_shared, tuned.encode(TEXTS), atol=1e-5)
    assert not torch.allclose(tuned_shared, base_shared, atol=1e-3)
