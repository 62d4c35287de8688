"""Submissions stored at once and classified later, in large batches, by a worker.

A submission waits here (``classification_pending``) when the model in use is too slow
for the request path (``SORTLOOP_CLASSIFY_ON``) or an import hands its rows to the
worker (``sortloop import-submissions --on-worker``). ``classify_pending`` drains the
queue batch by batch with the active model; each batch is committed, so the admin pages
show the categories arriving. Rows are claimed with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so two workers never classify the same row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import Submission
from shared.submissions.records import ClassifiesTexts, classify_submissions

logger = logging.getLogger(__name__)


def pending_count(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Submission)
            .where(Submission.classification_pending.is_(True))
        )
        or 0
    )


def queue_state(session: Session) -> dict[str, Any]:
    """What the admin pages show: how many wait, and the oldest one's age."""
    oldest = session.scalar(
        select(func.min(Submission.created_at)).where(Submission.classification_pending.is_(True))
    )
    return {"pending": pending_count(session), "oldest": oldest.isoformat() if oldest else None}


def _claim(session: Session, batch_size: int) -> list[Submission]:
    statement = (
        select(Submission)
        .where(Submission.classification_pending.is_(True))
        .order_by(Submission.id)
        .limit(batch_size)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return list(session.scalars(statement))


def classify_pending(
    session: Session,
    analyzer: ClassifiesTexts,
    *,
    batch_size: int = 256,
    progress: Callable[[int, int], None] = lambda _done, _total: None,
) -> int:
    """Classify every waiting submission, ``batch_size`` at a time, committing each batch.

    A batch the classifier fails on is not retried for ever: its rows record the error
    (status ``failed``) as a failed inline classification does. Returns how many rows
    this call handled; ``progress(done, total)`` after each batch."""
    total = pending_count(session)
    done = 0
    progress(0, total)
    while batch := _claim(session, batch_size):
        classify_submissions(session, analyzer, batch)
        for submission in batch:
            submission.classification_pending = False
        session.commit()
        done += len(batch)
        total = max(total, done)
        progress(done, total)
    logger.info("classify_pending done=%d", done)
    return done
