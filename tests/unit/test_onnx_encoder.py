"""The analyzer's encoder on ONNX Runtime: the same labels as torch on real data, one
export per set of weights, and torch whenever ONNX Runtime cannot be used."""

from __future__ import annotations

import pytest

from shared.classifier import default_base_model, load_base_classifier, onnx_encoder
from shared.classifier.base import CategorySpec
from tests.conftest import SHARED_DATA, labelled_slice


@pytest.fixture(scope="module")
def base():
    return load_base_classifier(default_base_model())


def test_onnx_gives_the_same_embeddings_and_labels_as_torch_on_real_data(base, tmp_path):
    labels, examples, _ = labelled_slice(SHARED_DATA / "hwu.csv", 12, 0, seed=3)
    texts = [example["text"] for example in examples]
    specs = [CategorySpec(name, name) for name in labels]
    on_torch = load_base_classifier(default_base_model())
    expected = on_torch.encode(texts)
    labels = [p.label for p in on_torch.classify(texts, specs)]

    assert onnx_encoder.accelerate(on_torch, tmp_path) is True
    assert on_torch.runtime is not None
    assert (on_torch.encode(texts) - expected).abs().max() < 1e-4
    assert [p.label for p in on_torch.classify(texts, specs)] == labels


def test_one_export_per_set_of_weights(base, tmp_path):
    other = load_base_classifier(default_base_model())
    assert onnx_encoder.accelerate(base, tmp_path)
    files = list(tmp_path.glob("encoder-*.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    assert onnx_encoder.accelerate(other, tmp_path)  # same weights: the same file
    assert [f.stat().st_mtime_ns for f in tmp_path.glob("encoder-*.onnx")] == [stamp]
    assert other.runtime is base.runtime


def test_a_head_reading_a_middle_block_gets_its_own_export_with_the_same_features(tmp_path):
    from shared.classifier.embedding import MiddleLayer

    labels, examples, _ = labelled_slice(SHARED_DATA / "hwu.csv", 6, 0, seed=4)
    texts = [example["text"] for example in examples]
    plain = load_base_classifier(default_base_model())
    reading = load_base_classifier(default_base_model())
    reading.middle_layer = MiddleLayer(3, 0.5)
    expected = reading.encode(texts)
    assert expected.shape == (len(texts), 768)

    assert onnx_encoder.accelerate(plain, tmp_path) and onnx_encoder.accelerate(reading, tmp_path)
    assert len(list(tmp_path.glob("encoder-*.onnx"))) == 2  # same weights, other outputs
    assert (reading.encode(texts) - expected).abs().max() < 1e-4
    assert plain.encode(texts).shape == (len(texts), 384)


def test_a_failed_export_leaves_the_classifier_on_torch(tmp_path, monkeypatch):
    classifier = load_base_classifier(default_base_model())
    before = classifier.encode(["the bins were not emptied"])

    def broken(*_args, **_kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_encoder, "export", broken)
    assert onnx_encoder.accelerate(classifier, tmp_path / "empty") is False
    assert classifier.runtime is None
    assert (classifier.encode(["the bins were not emptied"]) - before).abs().max() == 0


def test_onnx_runtime_is_installed_with_the_product():
    assert onnx_encoder.available()


def test_other_classifiers_are_left_alone(tmp_path):
    from tests.unit.fakes import KeywordClassifier

    assert onnx_encoder.accelerate(KeywordClassifier(), tmp_path) is False


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_the_model_in_use_runs_on_the_configured_backend(config, session, backend):
    from shared.db import make_engine, make_session_factory
    from shared.deployment.active_model import ActiveModel
    from shared.model_store.layout import onnx_cache_directory

    model = ActiveModel(
        config.with_overrides(inference_backend=backend),
        make_session_factory(make_engine(config.database_url)),
    )
    result = model.classify(["the bins were not emptied"], [CategorySpec("waste", "bins")])
    assert result.predictions[0].label == "waste"
    classifier, _ = model.classifier()
    assert (classifier.runtime is not None) == (backend == "onnx")
    assert model.get_model_info()["process"]["inference_backend"] == backend
    exported = list(onnx_cache_directory(config.models_dir).glob("*.onnx"))
    assert len(exported) == (1 if backend == "onnx" else 0)


def test_a_head_with_a_token_bank_gets_token_states_from_its_own_export(tmp_path):
    import torch

    from shared.classifier.embedding import TokenBank

    labels, examples, _ = labelled_slice(SHARED_DATA / "hwu.csv", 6, 0, seed=4)
    texts = [example["text"] for example in examples]
    # The bank: a few texts' first tokens for each of two rows (any unit vectors do).
    bank = TokenBank(
        torch.nn.functional.normalize(torch.randn(10, 384), dim=-1),
        torch.tensor([0] * 5 + [1] * 5),
        2,
    )
    matching = load_base_classifier(default_base_model())
    matching.token_bank = bank
    expected = matching.encode(texts)
    assert expected.shape == (len(texts), 384 + 2)
    assert torch.allclose(expected[:, 384:].sum(dim=1), torch.zeros(len(texts)), atol=1e-5)

    plain = load_base_classifier(default_base_model())
    assert onnx_encoder.accelerate(plain, tmp_path) and onnx_encoder.accelerate(matching, tmp_path)
    assert len(list(tmp_path.glob("encoder-*-tokens.onnx"))) == 1
    assert (matching.encode(texts) - expected).abs().max() < 1e-4
    assert plain.encode(texts).shape == (len(texts), 384)
    # ONNX Runtime's threads do not spin between runs where torch matches after each.
    spinning = "session.intra_op.allow_spinning"
    assert matching.runtime.session.get_session_options().get_session_config_entry(spinning) == "0"
    assert plain.runtime.session.get_session_options().get_session_config_entry(spinning) == "1"
