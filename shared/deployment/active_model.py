"""The model in use: which one is active, loading it beside the old one, and the swap.

Plain Python (no Flask, no Celery) so the web analyzer and the worker share it. The
database says which model is active (``shared.deployment.deployed``: a FineTuningRun
with ``model_path``, or none for the base model). ``ActiveModel`` checks that cheaply at most every
``check_interval`` seconds; when it changed, it loads the new model while the old one keeps
serving, then swaps one reference. Callers that already hold the old classifier finish
with it. When loading fails the old model stays in use and the failure is logged and
recorded as a DeploymentEvent (action ``load``, outcome ``failed``); the same failing model
is not retried until the active model changes again.

In the web tier the check runs eagerly (``watch``): a background thread per process
refreshes every ``check_interval`` seconds whether or not requests arrive, so the
model is loaded before the first submission and a deploy or rollback is served, and
reported by ``model-info``, within one interval (plus the load), with no traffic
needed. Each swap records its lag: the seconds from the deploy or rollback event in
the audit log to the moment this process serves the new model.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from shared import compute
from shared.classifier.base import CategorySpec, Classifier, Prediction
from shared.classifier.identity import base_model_label, base_model_version, run_version
from shared.config import Config
from shared.deployment.audit import deployment_history, record_event
from shared.deployment.deployed import deployed_run
from shared.deployment.watcher import Watcher
from shared.training.results import metric

logger = logging.getLogger(__name__)

METRIC_SUMMARY_KEYS = (
    "accuracy",
    "macro_f1",
    "baseline_accuracy",
    "baseline_macro_f1",
    "per_category_f1",
    "meets_criteria",
    "improvement_over_baseline",
)


@dataclass(frozen=True)
class ActiveModelRecord:
    """What the database says should be in use. ``run_id`` None means the base model."""

    run_id: int | None = None
    model_path: str | None = None
    metrics: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return "base" if self.run_id is None else "finetuned"


@dataclass(frozen=True)
class Classification:
    """Predictions for a batch, and the version of the one model that made all of them.

    ``shadow``: what the model in shadow said about the same texts, when one ran beside
    it (``shared.deployment.shadow_model``); never shown to the public."""

    predictions: list[Prediction]
    version: str
    shadow: Classification | None = None
    shadow_id: int | None = None

    def part(self, start: int, end: int) -> Classification:
        """The slice of a shared batch that belongs to one caller."""
        shadow = self.shadow.part(start, end) if self.shadow is not None else None
        return Classification(self.predictions[start:end], self.version, shadow, self.shadow_id)


@dataclass(frozen=True)
class _Loaded:
    record: ActiveModelRecord
    classifier: Classifier
    version: str


def summarize_metrics(results: dict[str, Any] | None) -> dict[str, Any] | None:
    """The headline numbers of a run's results (the whole results stay on the run)."""
    if not results:
        return None
    summary = {key: metric(results, key) for key in METRIC_SUMMARY_KEYS}
    return {key: value for key, value in summary.items() if value is not None} or None


def read_active_record(session: Session, models_dir: str | None = None) -> ActiveModelRecord:
    """One cheap read: the active model id and its run's path and metrics."""
    run = deployed_run(session)
    if run is None:
        return ActiveModelRecord()
    path = run.model_path
    if path and models_dir and not Path(path).is_absolute():
        path = str(Path(models_dir) / path)
    return ActiveModelRecord(run_id=run.id, model_path=path, metrics=summarize_metrics(run.results))


def _default_load_base(config: Config, device: str = "cpu") -> Classifier:
    from shared.classifier import load_base_classifier

    return load_base_classifier(config.base_model, config.base_model_kind, device=device)


def _default_load_finetuned(config: Config, adapter_dir: str, version: str) -> Classifier:
    from shared.classifier import load_finetuned_classifier

    return load_finetuned_classifier(
        config.base_model, adapter_dir, version=version, kind=config.base_model_kind
    )


class ActiveModel:
    """The classifier in use, reloaded when the active model changes. Thread-safe."""

    def __init__(
        self,
        config: Config,
        session_factory: sessionmaker[Session],
        *,
        owner: str = "web",
        load_base: Callable[[Config], Classifier] = _default_load_base,
        load_finetuned: Callable[[Config, str, str], Classifier] = _default_load_finetuned,
        clock: Callable[[], float] = time.monotonic,
        device: str = "cpu",
    ) -> None:
        """``device``: where the model runs, ``cpu`` (web, always) or ``cuda`` (a worker
        of the inference queue on a GPU: ``SORTLOOP_INFERENCE_DEVICE``)."""
        self.config = config
        self.device = device
        self.session_factory = session_factory
        self.owner = owner
        self._load_base = (
            functools.partial(_default_load_base, device=device)
            if load_base is _default_load_base
            else load_base
        )
        self._load_finetuned = load_finetuned
        self._clock = clock
        self._base: Classifier | None = None
        self._loaded: _Loaded | None = None
        self._wanted: ActiveModelRecord | None = None
        self._checked_at: float | None = None
        self._failed: tuple[ActiveModelRecord, str] | None = None
        self._lock = threading.Lock()  # one loader at a time; readers never wait for it
        # Batch work on a CPU may compute in bf16 (SORTLOOP_BATCH_PRECISION); the web
        # tier, which classifies one text at a time, never does.
        self._batch_work = owner != "web" and device == "cpu"
        self._watcher = Watcher(
            self.refresh,
            self.config.model_check_interval_seconds,
            f"sortloop-model-watch-{self.owner}",
        )
        self._last_check: datetime | None = None  # wall clock of the last database check
        self._swapped_at: datetime | None = None
        self._reload_lag: float | None = None

    # -- what callers use -------------------------------------------------------------

    def classifier(self) -> tuple[Classifier, str]:
        """The classifier to use now and its version (loads lazily, swaps when needed)."""
        loaded = self._loaded
        if loaded is None:
            with self._lock:  # nothing to serve with yet: wait for the first load
                if self._loaded is None:
                    self._refresh_locked(force=True)
            loaded = self._loaded
        elif self._check_is_due() and self._lock.acquire(blocking=False):
            # Somebody else already loading? Then keep serving with what we have.
            try:
                self._refresh_locked(force=False)
            finally:
                self._lock.release()
            loaded = self._loaded
        assert loaded is not None
        return loaded.classifier, loaded.version

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> Classification:
        """Classify with the model in use; every prediction carries that model's version."""
        classifier, version = self.classifier()
        return Classification(classifier.classify(texts, categories), version)

    def current_version(self) -> str:
        """The version in use (or about to be, when nothing is loaded yet). Never loads."""
        loaded = self._loaded
        if loaded is not None:
            return loaded.version
        return self._version_of(self._wanted_record())

    def get_model_info(self) -> dict[str, Any]:
        """kind (base/finetuned), version, base model, run id and metrics of the model in use."""
        wanted = self._wanted_record()
        loaded = self._loaded
        record = loaded.record if loaded is not None else wanted
        failed = self._failed
        return {
            "kind": record.kind,
            "version": loaded.version if loaded is not None else self._version_of(record),
            "base_model": base_model_label(self.config.base_model),
            "base_model_kind": self.config.base_model_kind,
            "run_id": record.run_id,
            "metrics": record.metrics,
            "loaded": loaded is not None,
            "active_model_id": wanted.run_id,
            "load_error": failed[1] if failed is not None and failed[0] == wanted else None,
            "process": self.process_info(),
        }

    def refresh(self) -> None:
        """Check the database now and swap if the active model changed (e.g. after deploy)."""
        with self._lock:
            self._refresh_locked(force=True)

    def watch(self) -> None:
        """Check and swap in a background thread every ``check_interval`` seconds (the
        first check at once: the model is loaded before the first request). Idempotent
        per process; a forked child starts its own."""
        self._watcher.start()

    def stop_watching(self, timeout: float = 5.0) -> None:
        self._watcher.stop(timeout)

    def process_info(self) -> dict[str, Any]:
        """This process's view of hot reload (``model-info`` reports it per process)."""
        loaded = self._loaded
        classifier = loaded.classifier if loaded is not None else None
        if getattr(classifier, "runtime", None) is not None:
            backend = "onnx"
        elif getattr(classifier, "autocast", None) is not None:
            backend = "torch-bf16"
        else:
            backend = "torch"
        return {
            "pid": os.getpid(),
            # What the model in use computes with now: "onnx" once its session is ready.
            "inference_backend": backend,
            "watching": self._watcher.alive,
            "check_interval_seconds": self.config.model_check_interval_seconds,
            "checked_at": _iso(self._last_check),
            "swapped_at": _iso(self._swapped_at),
            "reload_lag_seconds": self._reload_lag,
        }

    # -- internals --------------------------------------------------------------------

    def _check_is_due(self) -> bool:
        if self._checked_at is None:
            return True
        return self._clock() - self._checked_at >= self.config.model_check_interval_seconds

    def _wanted_record(self) -> ActiveModelRecord:
        """What the database says now, read when a check is due. A status read does not
        restart the check timer: the next classification or watch tick still swaps."""
        if self._wanted is None or self._check_is_due():
            try:
                self._wanted = self._read_record(restart_timer=False)
            except Exception:  # a status read must not fail because the DB blinked
                logger.exception("active model check failed owner=%s", self.owner)
        return self._wanted or ActiveModelRecord()

    def _read_record(self, restart_timer: bool = True) -> ActiveModelRecord:
        session = self.session_factory()
        try:
            record = read_active_record(session, self.config.models_dir)
        finally:
            session.close()
        self._wanted = record
        if restart_timer:
            self._checked_at = self._clock()
            self._last_check = datetime.now(UTC)
        return record

    def _measure_lag(self) -> float | None:
        """Seconds from the latest deploy or rollback in the audit log to now."""
        session = self.session_factory()
        try:
            for event in deployment_history(session, limit=5):
                if event.action in ("deploy", "rollback") and event.outcome == "ok":
                    happened = event.created_at
                    if happened.tzinfo is None:
                        happened = happened.replace(tzinfo=UTC)
                    return round((datetime.now(UTC) - happened).total_seconds(), 3)
            return None
        finally:
            session.close()

    def _version_of(self, record: ActiveModelRecord) -> str:
        if record.run_id is None:
            return base_model_version(self.config.base_model)
        return run_version(record.run_id)

    def _refresh_locked(self, force: bool) -> None:
        if not force and not self._check_is_due():
            return
        try:
            wanted = self._read_record()
        except Exception:
            logger.exception("active model check failed owner=%s", self.owner)
            if self._loaded is not None:
                return
            wanted = ActiveModelRecord()  # no database answer yet: serve the base model
        loaded = self._loaded
        if loaded is not None and loaded.record.run_id == wanted.run_id:
            if loaded.record != wanted:  # same model, new metrics: keep the object
                self._loaded = _Loaded(wanted, loaded.classifier, loaded.version)
            return
        if self._failed is not None and self._failed[0] == wanted and loaded is not None:
            return  # this model failed to load before; wait for the next change
        version = self._version_of(wanted)
        try:
            classifier = self._load(wanted, version)
            self._failed = None
        except Exception as error:
            self._record_failure(wanted, version, error)
            if loaded is not None:
                return
            if wanted.run_id is None:
                raise  # the base model itself cannot load: nothing to serve with
            # First load and the fine-tuned model is broken: serve the base model.
            wanted = ActiveModelRecord()
            version = self._version_of(wanted)
            classifier = self._load(wanted, version)
        previous = loaded.version if loaded is not None else None
        if previous is not None:  # measured just before the swap, reported with it
            try:
                self._reload_lag = self._measure_lag()
            except Exception:
                logger.exception("could not measure the reload lag owner=%s", self.owner)
        self._swapped_at = datetime.now(UTC)
        self._loaded = _Loaded(wanted, classifier, version)  # the swap: one reference
        logger.info(
            "model in use owner=%s pid=%s from=%s to=%s lag=%ss",
            self.owner,
            os.getpid(),
            previous,
            version,
            self._reload_lag if previous is not None else None,
        )

    @property
    def is_loaded(self) -> bool:
        """Whether a model is in use in this process yet (nothing loads to answer this)."""
        return self._loaded is not None

    def load_run(self, run_id: int, model_path: str, version: str) -> Classifier:
        """Load another run's model the way this one loads the model in use (on the base
        model in memory when there is one): the model in shadow uses it."""
        return self._load(ActiveModelRecord(run_id=run_id, model_path=model_path), version)

    def _load(self, record: ActiveModelRecord, version: str) -> Classifier:
        classifier = self._load_classifier(record, version)
        kind = getattr(classifier, "kind", "")
        if (
            self._batch_work
            and hasattr(classifier, "autocast")
            and compute.batch_precision(self.config, kind) == "bf16"
        ):
            import torch

            # Batch work (worker, CLI) on a CPU with native bf16: faster than ONNX
            # Runtime fp32 at batch sizes, the same labels (shared.compute).
            classifier.autocast = torch.bfloat16
            logger.info("owner=%s model=%s encodes in bf16 (batch work)", self.owner, version)
            return classifier
        if self.config.inference_backend == "onnx" and self.device == "cpu":
            from shared.classifier import onnx_encoder
            from shared.model_store.layout import onnx_cache_directory

            # The web tier keeps serving on torch while a first export runs; batch
            # work (the CLI, re-classification) waits for it: it is about to encode a lot.
            accelerate = (
                onnx_encoder.accelerate_in_background
                if self._watcher.started
                else onnx_encoder.accelerate
            )
            accelerate(classifier, onnx_cache_directory(self.config.models_dir))
        return classifier

    def _load_classifier(self, record: ActiveModelRecord, version: str) -> Classifier:
        # On a GPU the fine-tuned model is always built on the base model in memory
        # (moved there once), as the engine's evaluation does.
        if self._base is None and (record.run_id is None or self.device != "cpu"):
            self._base = self._load_base(self.config)
        if record.run_id is None:
            return self._base
        if not record.model_path:
            raise FileNotFoundError(f"run {record.run_id} has no published model (model_path)")
        if self._base is not None and self._load_finetuned is _default_load_finetuned:
            # The base model is in memory: build on a copy of it instead of reading the
            # encoder from disk again (seconds less between a deploy and serving it).
            from shared.classifier import finetuned_from_base

            return finetuned_from_base(self._base, record.model_path, version)
        return self._load_finetuned(self.config, record.model_path, version)

    def _record_failure(self, record: ActiveModelRecord, version: str, error: Exception) -> None:
        detail = f"{type(error).__name__}: {error}"
        logger.error(
            "model load failed owner=%s pid=%s version=%s error=%s",
            self.owner,
            os.getpid(),
            version,
            detail,
        )
        self._failed = (record, detail)
        session = self.session_factory()
        try:
            record_event(
                session,
                "load",
                run_id=record.run_id,
                from_version=self._loaded.version if self._loaded is not None else None,
                to_version=version,
                actor=f"{self.owner}:{os.getpid()}",
                outcome="failed",
                detail=detail,
            )
            session.commit()
        except Exception:
            session.rollback()
            logger.exception("could not record the model load failure owner=%s", self.owner)
        finally:
            session.close()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds")
