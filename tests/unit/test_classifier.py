"""The classifier interface: embedding backend (packaged MiniLM) and NLI (tiny random BART)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from shared.classifier import (  # noqa: E402
    CategorySpec,
    ClassifierError,
    default_base_model,
    infer_model_kind,
    load_base_classifier,
    load_finetuned_classifier,
)

CATEGORIES = [
    CategorySpec("roads", "potholes, damaged roads and traffic"),
    CategorySpec("parks", "parks, playgrounds and green spaces"),
    CategorySpec("waste", "garbage collection and recycling bins"),
]


@pytest.fixture(scope="module")
def embedding_classifier():
    return load_base_classifier(default_base_model())


def test_importing_the_package_loads_no_ml_stack() -> None:
    code = "import sys, shared.classifier, shared.training.data_quality; print(any(m.split('.')[0] in {'torch','transformers','peft'} for m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_model_kind_is_inferred_from_the_model() -> None:
    assert infer_model_kind(default_base_model()) == "embedding"
    assert infer_model_kind("facebook/bart-large-mnli") == "nli"
    assert infer_model_kind("sentence-transformers/all-MiniLM-L6-v2") == "embedding"


def test_embedding_backend_classifies_obvious_texts(embedding_classifier) -> None:
    predictions = embedding_classifier.classify(
        ["There is a huge pothole on my street", "The bins have not been emptied for weeks"],
        CATEGORIES,
    )
    assert [p.label for p in predictions] == ["roads", "waste"]
    for prediction in predictions:
        assert set(prediction.scores) == {"roads", "parks", "waste"}
        assert sum(prediction.scores.values()) == pytest.approx(1.0)
        assert prediction.confidence == max(prediction.scores.values())
    assert embedding_classifier.version == "base:all-MiniLM-L6-v2"
    assert embedding_classifier.kind == "embedding"


def test_batching_does_not_change_scores(embedding_classifier) -> None:
    texts = [f"the park bench number {i} is broken" + " really" * (i % 5) for i in range(70)]
    together = embedding_classifier.classify(texts, CATEGORIES)
    alone = embedding_classifier.classify(texts[37:38], CATEGORIES)
    assert together[37].scores == pytest.approx(alone[0].scores, abs=1e-5)


def test_classify_is_thread_safe(embedding_classifier) -> None:
    expected = embedding_classifier.classify(["my street is full of potholes"], CATEGORIES)[0].label
    results: list[str] = []

    def work() -> None:
        results.append(
            embedding_classifier.classify(["my street is full of potholes"], CATEGORIES)[0].label
        )

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4


def test_empty_category_list_is_refused(embedding_classifier) -> None:
    with pytest.raises(ValueError, match="at least one category"):
        embedding_classifier.classify(["text"], [])


def test_nli_backend_classifies_through_the_same_interface(tiny_bart) -> None:
    classifier = load_base_classifier(tiny_bart)
    assert classifier.kind == "nli"
    predictions = classifier.classify(["my card never arrived", "a fee was charged"], CATEGORIES)
    assert len(predictions) == 2
    for prediction in predictions:
        assert prediction.label in {c.name for c in CATEGORIES}
        assert sum(prediction.scores.values()) == pytest.approx(1.0)


def test_nli_batches_agree_with_single_texts(tiny_bart) -> None:
    classifier = load_base_classifier(tiny_bart)
    texts = ["short", "a much longer text about potholes and parks and bins", "medium text here"]
    together = classifier.classify(texts, CATEGORIES)
    alone = classifier.classify(texts[1:2], CATEGORIES)
    assert together[1].scores == pytest.approx(alone[0].scores, abs=1e-5)


def test_missing_adapter_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ClassifierError, match="adapter"):
        load_finetuned_classifier(default_base_model(), tmp_path, version="run-1")
