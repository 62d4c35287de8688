"""A pipeline step's signs of life: progress on the run row, and the heartbeat.

``ProgressWriter`` is the trainer's progress callback (stage, progress, epoch, loss,
ETA, throttled) and answers "was I cancelled?"; ``Heartbeat`` keeps ``heartbeat_at``
fresh while a step works, so the reaper can tell a slow step from a dead worker.
Neither changes a run's status (``shared.training.lifecycle`` does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from shared.db import DatabaseOutage, is_conflict, is_outage, session_scope
from shared.models import FineTuningRun, utcnow

logger = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL = 0.75  # seconds between progress writes to the run row
LOSS_CURVE_MAX_POINTS = 500
# What the admin reads for each engine stage.
STAGE_TEXT = {
    "loading": "loading the base model",
    "training": "training",
    "saving": "saving the adapter",
    "evaluating": "evaluating the new and the base model on the test set",
    "cross_validation": "cross-validation",
}


class ProgressWriter:
    """The trainer's progress callback: writes stage, progress, epoch, loss, ETA and the
    heartbeat to the run row at most every ``interval`` seconds, and keeps what it
    learns about cancellation for ``should_cancel``.

    The write is conditional on the run still being in ``status``: when another process
    ended the run (cancel, reaper) the next check answers "cancel".
    """

    def __init__(
        self,
        run_id: int,
        sessions: sessionmaker[Session],
        status: str,
        progress_range: tuple[float, float],
        interval: float = PROGRESS_WRITE_INTERVAL,
        outage_patience_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self._clock = clock
        self.sessions = sessions
        self.status = status
        self.low, self.high = progress_range
        self.interval = interval
        self.loss_curve: list[dict[str, float]] = []
        self._last_write = 0.0
        self._cancelled = False
        self._progress = self.low
        self.outage_patience_seconds = outage_patience_seconds
        self._outage_since: float | None = None

    def __call__(
        self,
        stage: str,
        step: int,
        total_steps: int,
        epoch: int | float | None,
        loss: float | None,
        eta_seconds: float | None,
    ) -> None:
        if loss is not None and step > 0:
            self.loss_curve.append({"step": step, "epoch": epoch or 0, "loss": float(loss)})
            if len(self.loss_curve) > LOSS_CURVE_MAX_POINTS:
                self.loss_curve = self.loss_curve[::2]
        finished = total_steps > 0 and step >= total_steps
        if not finished and self._clock() - self._last_write < self.interval:
            return
        fraction = step / total_steps if total_steps else 0.0
        text = STAGE_TEXT.get(stage, stage)
        if total_steps:
            text += f": step {step} of {total_steps}" + (f", epoch {epoch}" if epoch else "")
        # Cross-validation restarts its step count: the bar never goes backwards.
        self._progress = max(
            self._progress, self.low + (self.high - self.low) * min(1.0, max(0.0, fraction))
        )
        self.write(
            stage=text[:200],
            progress=self._progress,
            epoch=float(epoch) if epoch is not None else None,
            loss=float(loss) if loss is not None else None,
            eta_seconds=float(eta_seconds) if eta_seconds is not None else None,
        )

    def write(self, **values: Any) -> None:
        """Write progress; through a database outage training goes on and the write is
        skipped, until the outage outlasts ``outage_patience_seconds`` (DatabaseOutage)."""
        values["heartbeat_at"] = utcnow()
        values = {key: value for key, value in values.items() if value is not None}
        try:
            with session_scope(self.sessions) as session:
                cancel_requested = session.scalar(
                    update(FineTuningRun)
                    .where(FineTuningRun.id == self.run_id, FineTuningRun.status == self.status)
                    .values(**values)
                    .returning(FineTuningRun.cancel_requested)
                )
        except Exception as error:
            if not is_outage(error):
                raise
            self._skip_during_outage(error)
            return
        self._outage_since = None
        self._last_write = self._clock()
        self._cancelled = cancel_requested is None or bool(cancel_requested)

    def _skip_during_outage(self, error: Exception) -> None:
        now = self._clock()
        self._outage_since = self._outage_since if self._outage_since is not None else now
        self._last_write = now  # try again after the usual interval
        if now - self._outage_since >= self.outage_patience_seconds:
            raise DatabaseOutage(
                f"the database was unreachable for more than "
                f"{self.outage_patience_seconds:g} s (writing progress)"
            ) from error
        logger.warning(
            "run=%s progress not written: %s for %.1fs",
            self.run_id,
            "database conflict" if is_conflict(error) else "database unreachable",
            now - self._outage_since,
        )  # fmt: skip

    def should_cancel(self) -> bool:
        """True once a cancel was requested or the run left this step's status."""
        if not self._cancelled and self._clock() - self._last_write >= self.interval:
            self.write()
        return self._cancelled


class Heartbeat:
    """A daemon thread that refreshes ``heartbeat_at`` while a step works, so the reaper
    can tell a slow step (model loading, evaluation) from a dead worker."""

    def __init__(self, run_id: int, sessions: sessionmaker[Session], status: str, every: float):
        self.run_id, self.sessions, self.status, self.every = run_id, sessions, status, every
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-run-{run_id}", daemon=True
        )

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with session_scope(self.sessions) as session:
                    session.execute(
                        update(FineTuningRun)
                        .where(FineTuningRun.id == self.run_id, FineTuningRun.status == self.status)
                        .values(heartbeat_at=utcnow())
                    )
            except Exception as error:  # a missed beat is not fatal; the next one may work
                logger.warning("run=%s heartbeat failed: %s", self.run_id, error)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def heartbeat_interval(heartbeat_timeout_seconds: float) -> float:
    """Beat four times per timeout, but at least every 10 s and at most twice a second."""
    return max(0.5, min(10.0, heartbeat_timeout_seconds / 4))
