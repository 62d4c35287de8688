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
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import Submission
from shared.submissions.records import ClassifiesTexts, classify_submissions

logger = logging.getLogger(__name__)

# Each batch is committed at once, so its rows show their categories together. With a
# heavy model on a CPU (a cross-encoder: seconds a text) a batch of 256 would show
# nothing for minutes; so the first batch is small and each next one is sized to take
# about BATCH_SECONDS at the speed measured so far, up to ``batch_size`` (a sentence
# encoder reaches it from the second batch on).
FIRST_BATCH = 8
BATCH_SECONDS = 3.0


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
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Classify every waiting submission in batches of up to ``batch_size`` (sized to
    the model's speed: ``BATCH_SECONDS``), committing each batch.

    A batch the classifier fails on is not retried for ever: its rows record the error
    (status ``failed``) as a failed inline classification does. Returns how many rows
    this call handled; ``progress(done, total)`` after each batch."""
    total = pending_count(session)
    done = 0
    progress(0, total)
    size = min(batch_size, FIRST_BATCH)
    while batch := _claim(session, size):
        started = clock()
        classify_submissions(session, analyzer, batch)
        for submission in batch:
            submission.classification_pending = False
        session.commit()
        seconds = clock() - started
        per_text = seconds / len(batch)
        size = (
            batch_size if per_text <= 0 else max(1, min(batch_size, int(BATCH_SECONDS / per_text)))
        )
        logger.info(
            "classify_pending batch=%d seconds=%.2f next_batch=%d", len(batch), seconds, size
        )
        done += len(batch)
        total = max(total, done)
        progress(done, total)
    logger.info("classify_pending done=%d", done)
    return done
