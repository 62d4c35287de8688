"""One answer to "which model is this?": kind, label and version strings."""

from __future__ import annotations

import json

import pytest

from shared.classifier import identity
from shared.classifier.identity import (
    base_model_label,
    base_model_version,
    default_base_model,
    infer_model_kind,
    run_version,
)
from shared.config import Config
from shared.models import FineTuningRun


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("facebook/bart-large-mnli", "nli"),
        ("cross-encoder/nli-deberta-v3-base", "nli"),
        ("joeddav/xlm-roberta-large-xnli", "nli"),
        ("roberta-large-nli", "nli"),
        ("sentence-transformers/all-MiniLM-L6-v2", "embedding"),
        ("sentence-transformers/nli-mpnet-base-v2", "embedding"),
        ("BAAI/bge-small-en-v1.5", "embedding"),
    ],
)
def test_config_and_classifier_infer_the_same_kind_from_a_name(name, kind):
    assert infer_model_kind(name) == kind
    assert Config.from_env({"BASE_MODEL": name}).base_model_kind == kind


def test_a_local_directory_is_judged_by_its_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "ENTAILMENT"}}))
    assert infer_model_kind(tmp_path) == "nli"
    assert infer_model_kind(default_base_model()) == "embedding"
    assert Config.from_env({"BASE_MODEL": str(tmp_path)}).base_model_kind == "nli"


def test_a_configured_kind_wins_over_inference():
    config = Config.from_env(
        {"BASE_MODEL": "facebook/bart-large-mnli", "BASE_MODEL_KIND": "embedding"}
    )
    assert config.base_model_kind == "embedding"


def test_version_strings_have_one_spelling():
    assert base_model_version(default_base_model()) == "base:all-MiniLM-L6-v2"
    assert base_model_version("/data/models/tiny-bart/") == "base:tiny-bart"
    assert base_model_label("facebook/bart-large-mnli") == "facebook/bart-large-mnli"
    assert run_version(7) == "run-7" == FineTuningRun(id=7).version


def test_same_base_model_ignores_where_the_model_lives():
    assert identity.same_base_model("/a/b/tiny-bart", "/c/tiny-bart/")
    assert identity.same_base_model(default_base_model(), "all-MiniLM-L6-v2")
    assert not identity.same_base_model("facebook/bart-large-mnli", "all-MiniLM-L6-v2")
