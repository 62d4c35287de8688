"""Shadow evaluation in the database: start, stop, the report, and its daily event.

An admin puts a completed or imported run *in shadow*: every web process loads it
beside the model in use (``shared.deployment.shadow_model``), scores each new
submission with both in the same batch and stores the shadow's answer in a
``ShadowPrediction`` (``shared.submissions.records``). Admins' decisions judge both:
the report compares each stored answer with the category an admin set since. One
shadow at a time: the database refuses a second (``Shadow.active_lock``). Deploying
the run in shadow ("promote") goes through ``registry.deploy_model`` like any deploy,
which ends the shadow in the same transaction (``end_shadow_of_deployed_run``). Starting
and ending a shadow are recorded in the audit trail (action ``shadow``).

Plain Python: the web routes, the worker's daily report and the tests call these.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.config import Config
from shared.deployment.audit import record_event
from shared.deployment.deployed import deployed_run
from shared.errors import Conflict, NotFound
from shared.model_store.checks import active_category_names, verify_adapter_directory
from shared.model_store.layout import run_model_path
from shared.models import (
    FineTuningRun,
    NotificationEvent,
    Shadow,
    ShadowPrediction,
    Submission,
    utcnow,
)
from shared.notifications.events import emit_event
from shared.stats import mcnemar_exact_p_value

logger = logging.getLogger(__name__)

SHADOWABLE_STATUSES = ("completed", "imported")
REPORT_EVERY = timedelta(days=1)


def active_shadow(session: Session) -> Shadow | None:
    """The shadow running now, or None."""
    return session.scalar(select(Shadow).where(Shadow.active_lock.is_(True)))


def start_shadow(session: Session, config: Config, run_id: int, actor: str) -> Shadow:
    """Put run ``run_id`` in shadow; commits, with an audit event.

    Unknown run → NotFound. A run that is not completed or imported, is the model in
    use, has missing or unreadable files, or any shadow already running → Conflict
    (nothing changed).
    """
    run = session.get(FineTuningRun, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    if run.status not in SHADOWABLE_STATUSES:
        raise Conflict(
            f"run {run_id} is {run.status}: only a completed or imported run can be put in shadow"
        )
    running = active_shadow(session)
    if running is not None:
        raise Conflict(f"run {running.run_id} is already in shadow (one at a time): stop it first")
    current = deployed_run(session)
    if current is not None and current.id == run.id:
        raise Conflict(f"run {run_id} is the model in use: there is nothing to compare it with")
    try:
        verify_adapter_directory(
            run_model_path(run, config.models_dir), config, active_category_names(session)
        )
    except (OSError, ValueError) as error:
        raise Conflict(f"run {run_id} cannot be put in shadow: {error}") from None
    shadow = Shadow(run_id=run.id, started_at=utcnow(), started_by=actor[:100], active_lock=True)
    try:
        session.add(shadow)
        session.flush()
        record_event(
            session, "shadow", run_id=run.id, to_version=run.version, actor=actor,
            detail="put in shadow beside the model in use",
        )  # fmt: skip
        session.commit()
    except IntegrityError:  # another admin started one at the same moment
        session.rollback()
        raise Conflict("another model was put in shadow at the same time: stop it first") from None
    logger.info("shadow started run_id=%s actor=%s", run.id, actor)
    return shadow


def stop_shadow(session: Session, actor: str) -> Shadow:
    """End the running shadow; commits, with an audit event. None running → NotFound."""
    shadow = active_shadow(session)
    if shadow is None:
        raise NotFound("no model is in shadow")
    _end(session, shadow, actor, "stopped")
    session.commit()
    logger.info("shadow stopped run_id=%s actor=%s", shadow.run_id, actor)
    return shadow


def end_shadow_of_deployed_run(session: Session, run: FineTuningRun, actor: str) -> None:
    """A deploy of the run in shadow promotes it: the shadow ends (the caller commits)."""
    shadow = active_shadow(session)
    if shadow is not None and shadow.run_id == run.id:
        _end(session, shadow, actor, "promoted")


def _end(session: Session, shadow: Shadow, actor: str, reason: str) -> None:
    run = session.get(FineTuningRun, shadow.run_id)
    shadow.ended_at = utcnow()
    shadow.ended_by = actor[:100]
    shadow.end_reason = reason
    shadow.active_lock = None
    session.flush()
    record_event(
        session, "shadow", run_id=shadow.run_id, from_version=run.version if run else None,
        actor=actor, detail=f"shadow {reason}",
    )  # fmt: skip


def shadow_report(session: Session, shadow: Shadow | None = None) -> dict[str, Any] | None:
    """The figures of the running shadow (or ``shadow``), from the stored rows.

    ``scored``: submissions both models scored; ``agreement``: the share where they
    gave the same category. Of those, ``reviewed`` are the ones an admin has decided
    (set a category or accepted the suggestion); on them, each model's accuracy, the
    texts only one of them got right, and McNemar's exact p of that difference.
    Shares and p are null while there is nothing to compute them on.
    """
    shadow = shadow if shadow is not None else active_shadow(session)
    if shadow is None:
        return None
    served_agrees = ShadowPrediction.served_category == ShadowPrediction.shadow_category
    scored, agreeing = session.execute(
        select(func.count(), func.sum(case((served_agrees, 1), else_=0))).where(
            ShadowPrediction.shadow_id == shadow.id
        )
    ).one()
    active_right = ShadowPrediction.served_category == Submission.category
    shadow_right = ShadowPrediction.shadow_category == Submission.category
    reviewed, active_hits, shadow_hits, active_only, shadow_only = session.execute(
        select(
            func.count(),
            func.sum(case((active_right, 1), else_=0)),
            func.sum(case((shadow_right, 1), else_=0)),
            func.sum(case((and_(active_right, ~shadow_right), 1), else_=0)),
            func.sum(case((and_(shadow_right, ~active_right), 1), else_=0)),
        )
        .select_from(ShadowPrediction)
        .join(Submission, Submission.id == ShadowPrediction.submission_id)
        .where(
            ShadowPrediction.shadow_id == shadow.id,
            Submission.reviewed_at.is_not(None),
            Submission.category.is_not(None),
        )
    ).one()
    active_only, shadow_only = int(active_only or 0), int(shadow_only or 0)
    run = session.get(FineTuningRun, shadow.run_id)
    return {
        "run_id": shadow.run_id,
        "version": run.version if run is not None else None,
        "since": _iso(shadow.started_at),
        "started_by": shadow.started_by,
        "scored": int(scored),
        "agreement": _share(agreeing, scored),
        "reviewed": int(reviewed),
        "accuracy_active": _share(active_hits, reviewed),
        "accuracy_shadow": _share(shadow_hits, reviewed),
        "active_only_right": active_only,
        "shadow_only_right": shadow_only,
        "p_value": mcnemar_exact_p_value(active_only, shadow_only) if reviewed else None,
    }


def emit_daily_report(session: Session, now: datetime | None = None) -> dict[str, Any] | None:
    """Emit ``shadow.report`` for the running shadow unless one went out for it in the
    last day (the beat checks hourly); commits. Returns the report sent, or None."""
    shadow = active_shadow(session)
    if shadow is None:
        return None
    now = now or utcnow()
    last = session.scalar(
        select(func.max(NotificationEvent.created_at)).where(
            NotificationEvent.type == "shadow.report",
            NotificationEvent.run_id == shadow.run_id,
            NotificationEvent.created_at >= shadow.started_at,
        )
    )
    if last is not None:
        last = last if last.tzinfo is not None else last.replace(tzinfo=now.tzinfo)
        if now - last < REPORT_EVERY:
            return None
    report = shadow_report(session, shadow)
    assert report is not None
    run = session.get(FineTuningRun, shadow.run_id)
    emit_event(
        session, "shadow.report", run=run,
        model={"version": report["version"], "run_id": shadow.run_id},
        data=report,
    )  # fmt: skip
    session.commit()
    logger.info("shadow report sent run_id=%s scored=%s", shadow.run_id, report["scored"])
    return report


def _share(part: Any, whole: Any) -> float | None:
    return round(int(part or 0) / int(whole), 4) if whole else None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
