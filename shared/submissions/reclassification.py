"""Re-classify what no admin has reviewed yet with the model now in use.

A dry run (the default) only counts what would change ("42 submissions would move from
roads to parks"); applying also stores the new category, scores and model version.
Submissions an admin has reviewed (``reviewed_at`` set) are never touched. The summary
is recorded as a DeploymentEvent (action ``reclassify``) so the dashboard can show it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.classifier.base import CategorySpec
from shared.deployment.active_model import Classification
from shared.deployment.audit import record_event
from shared.models import DeploymentEvent, Submission

logger = logging.getLogger(__name__)

BATCH_SIZE = 64
MAX_MOVES = 200

Classify = Callable[[list[str], list[CategorySpec]], Classification]
Progress = Callable[[int, int], None]


def _no_progress(_done: int, _total: int) -> None:
    return None


def _sentence(count: int, source: str | None, target: str, dry_run: bool) -> str:
    noun = "submission" if count == 1 else "submissions"
    verb = "would move" if dry_run else "moved"
    return f"{count} {noun} {verb} from {source or 'no category'} to {target}"


def reclassify_unreviewed(
    session: Session,
    classify: Classify,
    categories: list[CategorySpec],
    *,
    dry_run: bool = True,
    actor: str | None = None,
    progress: Progress = _no_progress,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """Run ``classify`` over unreviewed submissions; commits the changes (if applied) and
    the summary event. Returns the summary."""
    if not categories:
        raise ValueError("there is no active category to classify into")
    unreviewed = Submission.reviewed_at.is_(None)
    total = session.scalar(select(func.count()).select_from(Submission).where(unreviewed)) or 0
    moves: Counter[tuple[str | None, str]] = Counter()
    version = None
    done = 0
    last_id = 0
    progress(0, total)
    while True:
        batch = list(
            session.scalars(
                select(Submission)
                .where(unreviewed, Submission.id > last_id)
                .order_by(Submission.id)
                .limit(batch_size)
            )
        )
        if not batch:
            break
        last_id = batch[-1].id
        result = classify([submission.message for submission in batch], categories)
        version = result.version
        for submission, prediction in zip(batch, result.predictions, strict=True):
            if submission.category != prediction.label:
                moves[(submission.category, prediction.label)] += 1
            if not dry_run:
                submission.category = prediction.label
                submission.predicted_category = prediction.label
                submission.confidence = prediction.confidence
                submission.scores = dict(prediction.scores)
                submission.model_version = result.version
                submission.classification_error = None
        done += len(batch)
        if not dry_run:
            session.flush()
        progress(done, total)
    # The biggest moves first; a long tail of tiny moves is cut to keep the event small.
    ordered = sorted(moves.items(), key=lambda item: (-item[1], str(item[0])))[:MAX_MOVES]
    summary = {
        "dry_run": dry_run,
        "model_version": version,
        "examined": done,
        "changed": sum(moves.values()),
        "moves": [
            {"from": source, "to": target, "count": count} for (source, target), count in ordered
        ],
        "sentences": [
            _sentence(count, source, target, dry_run) for (source, target), count in ordered
        ],
    }
    record_event(
        session,
        "reclassify",
        to_version=version,
        actor=actor or "worker",
        outcome="dry-run" if dry_run else "applied",
        detail=summary,
    )
    session.commit()
    logger.info(
        "reclassify done dry_run=%s examined=%d changed=%d version=%s",
        dry_run,
        done,
        summary["changed"],
        version,
    )
    return summary


def latest_reclassification(session: Session) -> dict[str, Any] | None:
    """The newest re-classification summary (with when and by whom), or None."""
    event = session.scalar(
        select(DeploymentEvent)
        .where(DeploymentEvent.action == "reclassify")
        .order_by(DeploymentEvent.created_at.desc(), DeploymentEvent.id.desc())
        .limit(1)
    )
    if event is None or not event.detail:
        return None
    try:
        summary = json.loads(event.detail)
    except json.JSONDecodeError:
        return None
    summary.update(
        {"event_id": event.id, "actor": event.actor, "created_at": event.created_at.isoformat()}
    )
    return summary
