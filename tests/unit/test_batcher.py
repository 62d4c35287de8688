"""The analyzer's micro-batcher: concurrent classifications share batches, and each
caller gets exactly its own predictions, in order."""

from __future__ import annotations

import threading
import time

import pytest

from shared.classifier.base import CategorySpec, Prediction
from shared.deployment.active_model import Classification
from web.analyzer import MicroBatcher

ROADS = [CategorySpec("roads", "potholes"), CategorySpec("parks", "trees")]
WASTE = [CategorySpec("bins", "rubbish"), CategorySpec("noise", "loud")]


class EchoModel:
    """Predicts a label that names the text and the categories; records each batch."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> Classification:
        with self.lock:
            self.batches.append(list(texts))
        time.sleep(self.delay)  # a busy model: callers queue up behind a running batch
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("the model exploded")
        names = "+".join(c.name for c in categories)
        return Classification([Prediction(f"{t}|{names}", 0.9) for t in texts], "v-test")


def run_concurrently(batcher: MicroBatcher, jobs: list[tuple[list[str], list]]) -> list:
    results: list = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def call(index: int) -> None:
        texts, categories = jobs[index]
        start.wait()
        try:
            results[index] = batcher.classify(texts, categories)
        except Exception as error:  # noqa: BLE001 - the test inspects it
            results[index] = error

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_each_caller_gets_its_own_predictions_in_order_under_concurrency():
    model = EchoModel(delay=0.05)
    batcher = MicroBatcher(model.classify, wait_seconds=0.01, max_size=64)
    jobs = [([f"text {i}a", f"text {i}b", f"text {i}c"], ROADS) for i in range(24)]
    results = run_concurrently(batcher, jobs)
    for (texts, _), result in zip(jobs, results, strict=True):
        assert [p.label for p in result.predictions] == [f"{t}|roads+parks" for t in texts]
        assert result.version == "v-test"
    # They shared batches: fewer model calls than callers, and some batch held several.
    assert len(model.batches) < len(jobs)
    assert max(len(batch) for batch in model.batches) > 3
    assert sorted(t for batch in model.batches for t in batch) == sorted(
        t for texts, _ in jobs for t in texts
    )


def test_different_category_lists_never_share_a_batch():
    model = EchoModel(delay=0.05)
    batcher = MicroBatcher(model.classify, wait_seconds=0.01, max_size=64)
    jobs = [([f"r{i}"], ROADS) if i % 2 else ([f"w{i}"], WASTE) for i in range(12)]
    results = run_concurrently(batcher, jobs)
    for (texts, categories), result in zip(jobs, results, strict=True):
        names = "+".join(c.name for c in categories)
        assert [p.label for p in result.predictions] == [f"{texts[0]}|{names}"]
    for batch in model.batches:
        assert len({text[0] for text in batch}) == 1  # all r... or all w...


def test_an_error_fails_only_its_batch_and_the_batcher_keeps_serving():
    model = EchoModel(fail_on="boom")
    batcher = MicroBatcher(model.classify, wait_seconds=0.0, max_size=64)
    with pytest.raises(RuntimeError, match="exploded"):
        batcher.classify(["boom"], ROADS)
    result = batcher.classify(["fine"], ROADS)
    assert [p.label for p in result.predictions] == ["fine|roads+parks"]


def test_a_lone_request_does_not_wait_for_company():
    model = EchoModel()
    batcher = MicroBatcher(model.classify, wait_seconds=30.0, max_size=64)
    started = time.monotonic()
    batcher.classify(["alone"], ROADS)
    # It would have waited 30 s had it waited for others: nobody else was in flight.
    assert time.monotonic() - started < 10
    assert model.batches == [["alone"]]


def test_a_large_job_runs_on_its_own_in_the_callers_thread():
    model = EchoModel()
    batcher = MicroBatcher(model.classify, wait_seconds=0.0, max_size=4)
    texts = [f"t{i}" for i in range(10)]
    result = batcher.classify(texts, ROADS)
    assert len(result.predictions) == 10
    assert model.batches == [texts]
    assert batcher.batches_run == 0  # the batcher thread was not involved
