"""The model in shadow in one process: loaded beside the model in use, hot-reloaded.

Like ``ActiveModel`` for deploys: the database says which run is in shadow
(``shared.deployment.shadow``); ``ShadowModel`` checks that cheaply every
``check_interval`` seconds (in the web tier from a background thread, ``watch``, so a
process picks the shadow up with no request) and loads the run's model through the
model in use (``ActiveModel.load_run``: on the base model already in memory). When the
shadow ends, the model is dropped. ``beside`` adds the shadow's predictions to a batch
the model in use has just classified; it never fails that batch: a shadow that cannot
load or classify is logged, reported in ``info`` and left out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from shared.classifier.base import CategorySpec, Classifier
from shared.classifier.identity import run_version
from shared.config import Config
from shared.deployment.active_model import ActiveModel, Classification
from shared.deployment.shadow import active_shadow
from shared.deployment.watcher import Watcher
from shared.models import FineTuningRun

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowRecord:
    """What the database says is in shadow: the shadow's id, its run and model folder."""

    shadow_id: int
    run_id: int
    model_path: str | None


@dataclass(frozen=True)
class _Loaded:
    record: ShadowRecord
    classifier: Classifier
    version: str


def read_shadow_record(session: Session, models_dir: str | None = None) -> ShadowRecord | None:
    shadow = active_shadow(session)
    if shadow is None:
        return None
    run = session.get(FineTuningRun, shadow.run_id)
    path = run.model_path if run is not None else None
    if path and models_dir and not Path(path).is_absolute():
        path = str(Path(models_dir) / path)
    return ShadowRecord(shadow_id=shadow.id, run_id=shadow.run_id, model_path=path)


class ShadowModel:
    """The run in shadow, if any, for one process. Thread-safe like ``ActiveModel``."""

    def __init__(
        self,
        active: ActiveModel,
        *,
        config: Config | None = None,
        session_factory: sessionmaker[Session] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.active = active
        self.config = config or active.config
        self.session_factory = session_factory or active.session_factory
        self._clock = clock
        self._loaded: _Loaded | None = None
        self._failed: tuple[ShadowRecord, str] | None = None
        self._checked_at: float | None = None
        self._lock = threading.Lock()
        self._watcher = Watcher(
            self.refresh, self.config.model_check_interval_seconds, "sortloop-shadow-watch"
        )

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> Classification:
        """Classify with the model in use, and the same batch with the shadow beside it."""
        return self.beside(self.active.classify(texts, categories), texts, categories)

    def beside(
        self, served: Classification, texts: list[str], categories: list[CategorySpec]
    ) -> Classification:
        """``served`` with the shadow's predictions of the same texts (if one is loaded)."""
        if (
            not self._watcher.started
            and self._check_is_due()
            and self._lock.acquire(blocking=False)
        ):
            try:  # no background check in this process: check on the way
                self._refresh_locked()
            finally:
                self._lock.release()
        loaded = self._loaded
        if loaded is None:
            return served
        try:
            predictions = loaded.classifier.classify(texts, categories)
            if len(predictions) != len(texts):
                raise RuntimeError("the shadow returned a wrong number of predictions")
        except Exception:  # the public's answer never depends on the shadow
            logger.exception("shadow classification failed version=%s", loaded.version)
            return served
        shadow = Classification(predictions, loaded.version)
        return Classification(served.predictions, served.version, shadow, loaded.record.shadow_id)

    def refresh(self) -> None:
        """Check the database now; load or drop the shadow when it changed."""
        with self._lock:
            self._refresh_locked()

    def info(self) -> dict[str, Any] | None:
        """This process's view of the shadow (``model-info`` reports it), or None."""
        loaded, failed = self._loaded, self._failed
        if loaded is None and failed is None:
            return None
        record = loaded.record if loaded is not None else failed[0]  # type: ignore[index]
        return {
            "run_id": record.run_id,
            "version": run_version(record.run_id),
            "loaded": loaded is not None,
            "load_error": failed[1] if failed is not None and loaded is None else None,
        }

    def watch(self) -> None:
        """Check every ``check_interval`` seconds in a background thread (first at once)."""
        self._watcher.start()

    def stop_watching(self, timeout: float = 5.0) -> None:
        self._watcher.stop(timeout)

    def _check_is_due(self) -> bool:
        if self._checked_at is None:
            return True
        return self._clock() - self._checked_at >= self.config.model_check_interval_seconds

    def _refresh_locked(self) -> None:
        session = self.session_factory()
        try:
            wanted = read_shadow_record(session, self.config.models_dir)
        finally:
            session.close()
        self._checked_at = self._clock()
        loaded = self._loaded
        if wanted is None:
            if loaded is not None:
                logger.info("shadow ended pid=%s version=%s", os.getpid(), loaded.version)
            self._loaded, self._failed = None, None
            return
        if loaded is not None and loaded.record == wanted:
            return
        if self._failed is not None and self._failed[0] == wanted:
            return  # failed before: wait for the next change
        if not self.active.is_loaded:
            # Load after the model in use: on its base model, and never two first
            # imports of the model libraries at once (they are not thread-safe).
            self._checked_at = None
            return
        version = run_version(wanted.run_id)
        try:
            if not wanted.model_path:
                raise FileNotFoundError(f"run {wanted.run_id} has no published model")
            classifier = self.active.load_run(wanted.run_id, wanted.model_path, version)
        except Exception as error:
            detail = f"{type(error).__name__}: {error}"
            logger.error(
                "shadow load failed pid=%s version=%s error=%s", os.getpid(), version, detail
            )
            self._loaded, self._failed = None, (wanted, detail)
            return
        self._loaded, self._failed = _Loaded(wanted, classifier, version), None
        logger.info("shadow loaded pid=%s version=%s", os.getpid(), version)
