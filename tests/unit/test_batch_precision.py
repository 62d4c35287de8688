"""Batch work's encoder in bf16: the same labels as fp32 on real data, chosen only for
batch work (never the web tier), and only where the CPU computes bf16 natively."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared import compute
from shared.classifier import default_base_model, load_base_classifier
from shared.classifier.base import CategorySpec
from shared.classifier.embedding import MiddleLayer
from shared.config import ConfigError
from tests.conftest import SHARED_DATA, labelled_slice


@pytest.fixture(scope="module")
def hwu_slice():
    labels, examples, test = labelled_slice(SHARED_DATA / "hwu.csv", 8, 12, seed=5)
    return labels, examples, test


def test_bf16_gives_the_labels_of_fp32_on_real_data_zero_shot_and_with_a_head(hwu_slice):
    from worker.fine_tuning.linear_head import fit_linear_head

    labels, examples, test = hwu_slice
    texts = [example["text"] for example in test]
    specs = [CategorySpec(name, name) for name in labels]
    classifier = load_base_classifier(default_base_model())
    classifier.middle_layer = MiddleLayer(3, 0.5)  # the head's features, as it ships them
    fp32_zero_shot = [
        p.label for p in load_base_classifier(default_base_model()).classify(texts, specs)
    ]
    fp32 = classifier.encode(texts).numpy()
    index = {name: i for i, name in enumerate(labels)}
    head = fit_linear_head(
        classifier.encode([e["text"] for e in examples]).numpy(),
        np.array([index[e["label"]] for e in examples]),
        classifier.encode(labels).numpy(),
        seed=0,
    )

    classifier.autocast = torch.bfloat16
    bf16 = classifier.encode(texts)
    zero_shot = load_base_classifier(default_base_model())
    zero_shot.autocast = torch.bfloat16
    bf16_zero_shot = [p.label for p in zero_shot.classify(texts, specs)]

    assert bf16.dtype == torch.float32, "pooling and the result stay fp32"
    assert 0 < np.abs(bf16.numpy() - fp32).max() < 0.02, "bf16 ran, and stayed close"
    agree = np.mean(head.logits(bf16.numpy()).argmax(1) == head.logits(fp32).argmax(1))
    assert agree >= 0.99
    assert np.mean(np.array(bf16_zero_shot) == np.array(fp32_zero_shot)) >= 0.99


def test_auto_takes_bf16_only_where_the_cpu_computes_it_natively(config, monkeypatch):
    monkeypatch.setattr(compute, "native_bf16", lambda: True)
    assert compute.batch_precision(config) == "bf16"
    assert compute.batch_precision(config.with_overrides(batch_precision="fp32")) == "fp32"
    monkeypatch.setattr(compute, "native_bf16", lambda: False)
    assert compute.batch_precision(config) == "fp32"
    assert compute.batch_precision(config.with_overrides(batch_precision="bf16")) == "bf16"


def test_an_unknown_precision_is_refused_by_name(config):
    with pytest.raises(ConfigError, match="SORTLOOP_BATCH_PRECISION='fp16': use auto, bf16"):
        config.with_overrides(batch_precision="fp16")


@pytest.mark.parametrize(
    ("owner", "expected"), [("worker", "torch-bf16"), ("cli", "torch-bf16"), ("web", "onnx")]
)
def test_batch_work_encodes_in_bf16_and_the_web_tier_never_does(config, session, owner, expected):
    from shared.db import make_engine, make_session_factory
    from shared.deployment.active_model import ActiveModel

    model = ActiveModel(
        config.with_overrides(batch_precision="bf16"),
        make_session_factory(make_engine(config.database_url)),
        owner=owner,
    )
    result = model.classify(["the bins were not emptied"], [CategorySpec("waste", "bins")])

    assert result.predictions[0].label == "waste"
    classifier, _ = model.classifier()
    assert (classifier.autocast is torch.bfloat16) == (owner != "web")
    assert model.process_info()["inference_backend"] == expected


def test_a_cross_encoder_computes_in_bf16_only_when_asked(config, monkeypatch):
    monkeypatch.setattr(compute, "native_bf16", lambda: True)
    assert compute.batch_precision(config, "nli") == "fp32", "auto: labels unchecked"
    assert compute.batch_precision(config.with_overrides(batch_precision="bf16"), "nli") == "bf16"


@pytest.mark.parametrize(("precision", "lowered"), [("auto", False), ("bf16", True)])
def test_the_workers_cross_encoder_follows_the_setting(
    config, session, tiny_bart, precision, lowered
):
    from shared.db import make_engine, make_session_factory
    from shared.deployment.active_model import ActiveModel

    model = ActiveModel(
        config.with_overrides(
            batch_precision=precision, base_model=str(tiny_bart), base_model_kind="nli"
        ),
        make_session_factory(make_engine(config.database_url)),
        owner="worker",
    )
    categories = [CategorySpec("waste", "bins"), CategorySpec("roads", "potholes")]
    result = model.classify(["the bins were not emptied", "a pothole"], categories)

    assert len(result.predictions) == 2
    assert all(0 < p.confidence <= 1 for p in result.predictions)
    classifier, _ = model.classifier()
    assert classifier.kind == "nli"
    assert (classifier.autocast is torch.bfloat16) == lowered
    assert model.process_info()["inference_backend"] == ("torch-bf16" if lowered else "torch")


def test_bf16_matches_a_text_with_the_token_bank_as_fp32_does(hwu_slice):
    from shared.classifier.embedding import TokenBank, content_tokens

    labels, examples, test = hwu_slice
    classifier = load_base_classifier(default_base_model())
    index = {name: i for i, name in enumerate(labels)}
    tokens, rows = [], []
    with torch.inference_mode():
        for order, batch in classifier._batches([e["text"] for e in examples]):
            states = classifier.model(**batch).last_hidden_state
            for position, found in zip(
                order, content_tokens(states, batch["attention_mask"]), strict=True
            ):
                tokens.append(found)
                rows += [index[examples[position]["label"]]] * len(found)
    classifier.token_bank = TokenBank(torch.cat(tokens), torch.tensor(rows), len(labels))
    texts = [example["text"] for example in test]
    fp32 = classifier.encode(texts)
    classifier.autocast = torch.bfloat16
    bf16 = classifier.encode(texts)
    width = fp32.shape[1] - len(labels)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    # The match columns: the same best category for nearly every text, close values.
    assert (bf16[:, width:].argmax(1) == fp32[:, width:].argmax(1)).float().mean() >= 0.97
    assert (bf16[:, width:] - fp32[:, width:]).abs().max() < 0.03
