"""The analyzer: classifies new submissions in-process with the active model.

A thin Flask-side holder of ``shared.deployment.active_model.ActiveModel`` (one per
process, stored on the app as ``app.extensions["sortloop_analyzer"]``). In a serving
process (gunicorn or ``flask run``) the model loads at start and every process
checks for a deploy or rollback in the background (``ActiveModel.watch``); under a
test app it loads on the first submission.

Concurrent classifications in one process share a batch (``MicroBatcher``): a web
process serves several requests at once (gunicorn threads), and one forward pass over
eight texts costs far less than eight passes over one. A request that arrives alone
runs at once; one that arrives while others are in flight waits up to
``SORTLOOP_BATCH_WAIT_MS`` for company, and requests that queue up behind a running
batch form the next one. A run in shadow (``ShadowModel``) scores each batch beside the
model in use; its answers travel with the batch's ``Classification`` and are stored,
never shown to the public.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from shared.classifier.base import CategorySpec
from shared.deployment.active_model import ActiveModel, Classification
from shared.deployment.shadow_model import ShadowModel

logger = logging.getLogger(__name__)

Classify = Callable[[list[str], list[CategorySpec]], Classification]


@dataclass
class _Job:
    texts: list[str]
    categories: list[CategorySpec]
    future: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        return tuple((c.name, c.description) for c in self.categories)


class MicroBatcher:
    """Runs concurrent ``classify`` calls of one process as shared batches.

    One daemon thread per process runs the batches (started on first use, again after
    a fork); callers wait for their own slice of the result, in order. Jobs with
    different category lists run as separate batches; an error fails only the jobs of
    its batch.
    """

    def __init__(self, classify: Classify, wait_seconds: float, max_size: int) -> None:
        self._classify = classify
        self.wait_seconds = wait_seconds
        self.max_size = max_size
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        self._in_flight = 0
        self._count_lock = threading.Lock()
        self.batches_run = 0
        self.largest_batch = 0

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> Classification:
        if self.max_size <= 1 or len(texts) >= self.max_size:
            return self._classify(texts, categories)  # nothing to share: run here
        job = _Job(list(texts), list(categories))
        self._ensure_thread()
        with self._count_lock:
            self._in_flight += 1
        try:
            self._queue.put(job)
            return job.future.result()
        finally:
            with self._count_lock:
                self._in_flight -= 1

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop, name="sortloop-analyzer-batcher", daemon=True
                )
                self._thread.start()

    def _gather(self, first: _Job) -> list[_Job]:
        jobs, size = [first], len(first.texts)
        # Wait for company only when other requests are in flight in this process.
        deadline = time.monotonic() + (self.wait_seconds if self._in_flight > 1 else 0.0)
        while size < self.max_size:
            remaining = deadline - time.monotonic()
            try:
                job = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            jobs.append(job)
            size += len(job.texts)
        return jobs

    def _loop(self) -> None:
        while True:
            jobs = self._gather(self._queue.get())
            groups: dict[tuple[tuple[str, str], ...], list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.key, []).append(job)
            for members in groups.values():
                self._run(members)

    def _run(self, jobs: list[_Job]) -> None:
        texts = [text for job in jobs for text in job.texts]
        try:
            result = self._classify(texts, jobs[0].categories)
        except BaseException as error:  # every caller of the batch hears of it
            for job in jobs:
                job.future.set_exception(error)
            return
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(texts))
        start = 0
        for job in jobs:
            end = start + len(job.texts)
            job.future.set_result(result.part(start, end))
            start = end


# What a start-up measurement classifies: one short submission against eight categories.
PROBE_TEXT = "The streetlight outside number 12 has been broken for a week, please fix it"
PROBE_CATEGORIES = [
    CategorySpec(f"topic {number}", f"messages about public service number {number}")
    for number in range(8)
]


class SubmissionAnalyzer:
    """Classifies submissions, reports which model it uses, and says whether a public
    submission is classified here or left to a worker (``SORTLOOP_CLASSIFY_ON``)."""

    def __init__(
        self,
        active_model: ActiveModel,
        batcher: MicroBatcher | None = None,
        shadow: ShadowModel | None = None,
        *,
        classify_on: str = "web",
        budget_ms: float = 150.0,
    ) -> None:
        self.active_model = active_model
        self.batcher = batcher
        self.shadow = shadow  # the model in shadow rides the same batches (may be None)
        self.classify_on = classify_on
        self.budget_ms = budget_ms
        self.measured_ms: float | None = None

    def classifies_on_worker(self) -> bool:
        """``worker``: always; ``web``: never; ``auto``: when the start-up measurement
        found one submission slower than the budget (until measured: here)."""
        if self.classify_on != "auto":
            return self.classify_on == "worker"
        return self.measured_ms is not None and self.measured_ms > self.budget_ms

    def measure(self, repeats: int = 5) -> float:
        """Time one warm classification of a short text against eight categories: the
        fastest of ``repeats`` runs, so a busy host at start-up (other processes loading
        their models) does not make a light model look heavy."""
        self.active_model.classify([PROBE_TEXT], PROBE_CATEGORIES)  # loads, warms up
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            self.active_model.classify([PROBE_TEXT], PROBE_CATEGORIES)
            timings.append((time.perf_counter() - started) * 1000.0)
        self.measured_ms = min(timings)
        logger.info(
            "classification speed measured ms=%.1f budget_ms=%.0f on=%s pid=%s",
            self.measured_ms,
            self.budget_ms,
            "worker" if self.classifies_on_worker() else "web",
            os.getpid(),
        )
        return self.measured_ms

    def _measure_in_background(self) -> None:
        try:
            self.measure()
        except Exception:  # no model yet (database down): classify here, as before
            logger.exception("classification speed not measured pid=%s", os.getpid())

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> Classification:
        if self.batcher is not None:
            return self.batcher.classify(texts, categories)
        if self.shadow is not None:
            return self.shadow.classify(texts, categories)
        return self.active_model.classify(texts, categories)

    def current_version(self) -> str:
        return self.active_model.current_version()

    def get_model_info(self) -> dict[str, Any]:
        info = self.active_model.get_model_info()
        info["shadow"] = self.shadow.info() if self.shadow is not None else None
        info["classification"] = {
            "setting": self.classify_on,
            "on": "worker" if self.classifies_on_worker() else "web",
            "measured_ms": None if self.measured_ms is None else round(self.measured_ms, 1),
            "budget_ms": self.budget_ms,
        }
        return info

    def refresh(self) -> None:
        self.active_model.refresh()
        if self.shadow is not None:
            self.shadow.refresh()


def init_app(app: Flask, *, serving: bool = False) -> None:
    """``serving``: a real web process (watch the active model from the start)."""
    config = app.config["SORTLOOP"]
    active_model = ActiveModel(config, app.extensions["sortloop_sessions"], owner="web")
    shadow = ShadowModel(active_model)
    batcher = MicroBatcher(shadow.classify, config.batch_wait_ms / 1000.0, config.batch_max_size)
    analyzer = SubmissionAnalyzer(
        active_model,
        batcher,
        shadow,
        classify_on=config.classify_on,
        budget_ms=config.web_classify_budget_ms,
    )
    app.extensions["sortloop_analyzer"] = analyzer
    if serving:
        active_model.watch()
        shadow.watch()
        if config.classify_on == "auto":
            threading.Thread(
                target=analyzer._measure_in_background, name="sortloop-measure", daemon=True
            ).start()


def get_analyzer() -> SubmissionAnalyzer:
    return current_app.extensions["sortloop_analyzer"]
