"""Capture what a pipeline step logs into its run's log (``shared.training.run_log``).

``capture_run_log`` puts a ``logging`` handler on the root logger while a step runs:
every record at INFO or above that the step's thread emits (the pipeline, the engine's
data checks, epochs, evaluation, publish, a failure's traceback) is buffered and
appended to the run's log, every few seconds while the step works and once more when it
ends. A failed write keeps the buffer for the next one (a database outage loses no
line the capture still holds); the step never fails because of its log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from shared.db import session_scope
from shared.training.run_log import (
    ALREADY_RECORDED,
    LOG_FORMAT,
    MAX_LINES_PER_RUN,
    LogLine,
    append_run_log,
)

FLUSH_INTERVAL = 3.0  # seconds between writes while a step works
OUR_LOGGERS = ("worker", "shared")


class RunLogHandler(logging.Handler):
    """Buffers the records of one thread for one run and writes them in batches."""

    def __init__(
        self,
        run_id: int,
        sessions: sessionmaker[Session],
        *,
        thread_id: int | None = None,
        flush_interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(level=logging.INFO)
        self.run_id = run_id
        self.sessions = sessions
        self.thread_id = threading.get_ident() if thread_id is None else thread_id
        self.flush_interval = flush_interval
        self.clock = clock
        self.buffer: list[LogLine] = []
        self.dropped = 0  # lines that never reached the database (a runaway log)
        self.formatter_for_tracebacks = logging.Formatter(LOG_FORMAT)
        self._last_flush = clock()
        self._writing = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread_id or getattr(record, ALREADY_RECORDED, False):
            return
        if getattr(self._writing, "active", False):  # our own write logged something
            return
        try:
            self.buffer.append(LogLine.from_record(record, self.formatter_for_tracebacks))
            if len(self.buffer) >= MAX_LINES_PER_RUN:  # the latest lines matter most
                excess = len(self.buffer) - (MAX_LINES_PER_RUN - 1)  # room for the note
                del self.buffer[:excess]
                self.dropped += excess
            if self.clock() - self._last_flush >= self.flush_interval:
                self.flush()
        except Exception:  # a log line must never break the step
            self.handleError(record)

    def flush(self) -> None:
        """Append the buffered lines to the run's log; on failure keep them for later."""
        if not self.buffer or getattr(self._writing, "active", False):
            return
        lines, self.buffer = self.buffer, []
        if self.dropped:
            note = f"{self.dropped} earlier lines dropped: the log grew too fast"
            lines.insert(0, LogLine(lines[0].time, "WARNING", __name__, note))
            self.dropped = 0
        self._writing.active = True
        try:
            with session_scope(self.sessions) as session:
                append_run_log(session, self.run_id, lines)
        except Exception:
            self.buffer = lines + self.buffer
        finally:
            self._writing.active = False
            self._last_flush = self.clock()


@contextmanager
def capture_run_log(run_id: int, sessions: sessionmaker[Session]) -> Iterator[RunLogHandler]:
    """While the block runs, what this thread logs goes to run ``run_id``'s log too."""
    handler = RunLogHandler(run_id, sessions)
    root = logging.getLogger()
    # Our loggers must pass INFO on even where the process logs only warnings.
    quiet = [
        (logger, logger.level)
        for logger in map(logging.getLogger, OUR_LOGGERS)
        if logger.getEffectiveLevel() > logging.INFO
    ]
    for logger, _ in quiet:
        logger.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for logger, level in quiet:
            logger.setLevel(level)
        handler.flush()
