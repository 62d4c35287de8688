"""A background check: call ``check`` now and then every ``interval`` seconds until stopped.

The model in use and the shadow each keep one in every web process (eager hot reload:
a deploy shows within one interval with no request in flight). A failed check is
logged and tried again at the next tick: the database or a model file may blink.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

# The shortest pause between checks, whatever the configured interval says.
MIN_INTERVAL_SECONDS = 0.05


class Watcher:
    """One daemon thread running ``check`` every ``interval`` seconds (first at once)."""

    def __init__(self, check: Callable[[], None], interval: float, name: str) -> None:
        self._check = check
        self._interval = max(MIN_INTERVAL_SECONDS, interval)
        self.name = name
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def started(self) -> bool:
        """Started and not stopped since (the thread may be between checks)."""
        return self._thread is not None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.alive:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._check()
            except Exception:  # the database or the model blinked: try again next time
                logger.exception("%s: check failed pid=%s", self.name, os.getpid())
            self._stop.wait(self._interval)
