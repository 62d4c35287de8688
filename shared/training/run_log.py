"""A run's log: the lines its tasks wrote, kept in the database beside the run.

The worker captures what its loggers say while a step works (``worker.run_log``) and
appends it here; ``finish_run`` adds the line that ends every run, whoever ends it (the
pipeline, a cancel, the reaper). The run page shows the log and offers it as a text
download; ``sortloop train`` prints the same lines to stderr (``LOG_FORMAT``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import RunLogLine, utcnow

# One format for the run page, the download and `sortloop train`'s stderr.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A run keeps at most this many lines (a runaway loop must not fill the database) and
# each at most this many characters (a traceback fits).
MAX_LINES_PER_RUN = 5000
MAX_MESSAGE_CHARS = 20000
# A record carrying this attribute is already in the run's log (finish_run writes its
# own line in its transaction); the worker's capture skips it.
ALREADY_RECORDED = "sortloop_run_log_recorded"


@dataclass(frozen=True)
class LogLine:
    """One line of a run's log, as captured (plain data, no session)."""

    time: datetime
    level: str
    source: str
    message: str

    @classmethod
    def from_record(cls, record: logging.LogRecord, formatter: logging.Formatter) -> LogLine:
        """The record's message, with its traceback when it has one."""
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + formatter.formatException(record.exc_info)
        elif record.exc_text:
            message += "\n" + record.exc_text
        return cls(
            time=datetime.fromtimestamp(record.created, UTC),
            level=record.levelname,
            source=record.name,
            message=message,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "level": self.level,
            "logger": self.source,
            "message": self.message,
        }

    def as_text(self) -> str:
        stamp = self.time.strftime("%Y-%m-%d %H:%M:%S,") + f"{self.time.microsecond // 1000:03d}"
        return f"{stamp} {self.level} {self.source}: {self.message}"


def append_run_log(
    session: Session, run_id: int, lines: Iterable[LogLine], *, capped: bool = True
) -> int:
    """Add lines to a run's log (the caller commits); past ``MAX_LINES_PER_RUN`` the rest
    is dropped and one line says so (``capped=False``: the line that ends a run is
    always kept). Returns how many lines were added."""
    lines = list(lines)
    if not lines:
        return 0
    if capped:
        kept = session.scalar(select(func.count()).where(RunLogLine.run_id == run_id)) or 0
        room = MAX_LINES_PER_RUN - kept
        if room <= 0:
            return 0
        dropped = len(lines) - room
        if dropped > 0:
            lines = lines[: room - 1] + [
                LogLine(utcnow(), "WARNING", __name__, f"log full: {dropped + 1} lines dropped")
            ]
    for line in lines:
        session.add(
            RunLogLine(
                run_id=run_id,
                created_at=line.time,
                level=line.level[:10],
                source=line.source[:100],
                message=line.message[:MAX_MESSAGE_CHARS],
            )
        )
    return len(lines)


def log_run_event(session: Session, run_id: int, level: str, source: str, message: str) -> None:
    """One line written in the caller's transaction (a run's end, whoever ends it)."""
    append_run_log(session, run_id, [LogLine(utcnow(), level, source, message)], capped=False)


def read_run_log(session: Session, run_id: int) -> list[LogLine]:
    """A run's lines in the order they were written."""
    rows = session.scalars(
        select(RunLogLine)
        .where(RunLogLine.run_id == run_id)
        .order_by(RunLogLine.created_at, RunLogLine.id)
    )
    return [LogLine(row.created_at, row.level, row.source, row.message) for row in rows]


def run_log_text(lines: Iterable[LogLine]) -> str:
    """The log as a text file: one line per record (a traceback spans several)."""
    return "".join(line.as_text() + "\n" for line in lines)
