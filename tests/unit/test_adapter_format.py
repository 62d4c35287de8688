"""The adapter format's version: what this Sortloop reads, and what it refuses clearly."""

from __future__ import annotations

import pytest

from shared.classifier.artifact import FORMAT_VERSION, MIDDLE_LAYER_FORMAT, AdapterManifest

MANIFEST = {"base_model": "m", "kind": "embedding", "method": "head", "labels": ["a", "b"]}


def test_a_model_without_a_version_is_format_1_and_every_known_format_is_read() -> None:
    assert AdapterManifest.from_dict(MANIFEST).format_version == 1
    assert MIDDLE_LAYER_FORMAT <= FORMAT_VERSION
    read = AdapterManifest.from_dict({**MANIFEST, "format_version": MIDDLE_LAYER_FORMAT})
    assert read.format_version == MIDDLE_LAYER_FORMAT


def test_a_newer_format_is_refused_with_what_to_do() -> None:
    newer = (
        rf"adapter format {FORMAT_VERSION + 1} is newer .* \({FORMAT_VERSION}\); upgrade Sortloop"
    )
    with pytest.raises(ValueError, match=newer):
        AdapterManifest.from_dict({**MANIFEST, "format_version": FORMAT_VERSION + 1})


def test_a_head_as_wide_as_the_features_it_says_it_reads_loads_and_another_is_refused(
    tmp_path,
) -> None:
    import json

    import numpy as np
    from safetensors.numpy import save_file

    from shared.classifier import (
        ClassifierError,
        default_base_model,
        finetuned_from_base,
        load_base_classifier,
    )
    from shared.classifier.artifact import ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_PREFIX
    from shared.classifier.base import CategorySpec
    from tests.model_files import adapter_config

    def adapter(name: str, width: int, middle: bool) -> str:
        directory = tmp_path / name
        directory.mkdir()
        generator = np.random.default_rng(0)
        tensors = {
            f"{HEAD_PREFIX}linear_weight": generator.normal(size=(2, width)).astype(np.float32),
            f"{HEAD_PREFIX}linear_bias": np.zeros(2, dtype=np.float32),
            f"{HEAD_PREFIX}linear_calibration": np.array(1.0, dtype=np.float32),
            f"{HEAD_PREFIX}zero_shot_slope": np.array(1.0, dtype=np.float32),
            f"{HEAD_PREFIX}zero_shot_intercept": np.array(0.0, dtype=np.float32),
        }
        config = adapter_config(["a", "b"])
        if middle:
            tensors[f"{HEAD_PREFIX}middle_layer_index"] = np.array(3, dtype=np.int64)
            tensors[f"{HEAD_PREFIX}middle_layer_weight"] = np.array(0.5, dtype=np.float32)
            config["sortloop"]["format_version"] = MIDDLE_LAYER_FORMAT
        save_file(tensors, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (directory / ADAPTER_CONFIG).write_text(json.dumps(config))
        return str(directory)

    base = load_base_classifier(default_base_model())
    reading = finetuned_from_base(base, adapter("reads", 768, middle=True), version="run-1")
    categories = [CategorySpec("a", "a"), CategorySpec("b", "b")]
    assert reading.encode(["hello there"]).shape == (1, 768)
    assert len(reading.classify(["hello there"], categories)) == 1
    with pytest.raises(ClassifierError, match="reads 384 features, the encoder gives 768"):
        finetuned_from_base(base, adapter("narrow", 384, middle=True), version="run-2")
    with pytest.raises(ClassifierError, match="reads 768 features, the encoder gives 384"):
        finetuned_from_base(base, adapter("wide", 768, middle=False), version="run-3")


def test_the_middle_block_is_half_way_up_any_encoder() -> None:
    from types import SimpleNamespace

    from shared.classifier.embedding import MiddleLayer, middle_block

    def encoder(blocks: int) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(num_hidden_layers=blocks))

    assert middle_block(encoder(6), 0.5) == 3  # all-MiniLM-L6-v2
    assert middle_block(encoder(12), 0.5) == 6
    assert middle_block(encoder(2), 0.5) == 1
    assert middle_block(encoder(1), 0.5) is None  # no block between embeddings and last
    with pytest.raises(ValueError, match="not a middle layer"):
        MiddleLayer(3, 0.0)
