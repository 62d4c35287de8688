"""Events: written in the transaction of the change they report (an outbox), announced
after it commits, sent later by a task.

``emit_event`` adds a ``NotificationEvent`` row. A session whose factory was given a
trigger (``notify_on_commit``: web and worker do it at start) calls it once after the
commit, and the trigger enqueues ``sortloop.dispatch_notifications`` by name; the beat
also sweeps up any event a lost trigger left behind. A delivery's body is built from the
row (``delivery_body``), so every retry sends the same bytes with the same signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.orm import Session, sessionmaker

from shared.models import FineTuningRun, NotificationEvent, utcnow
from shared.training.results import metric

logger = logging.getLogger(__name__)

EVENT_TYPES = (
    "run.completed",
    "run.failed",
    "run.cancelled",
    "model.deployed",
    "model.rolled_back",
    "auto_deploy.skipped",
    "auto_train.started",
    "model.load_failed",
    "shadow.report",
)
# Sent by "send a test" to one webhook or recipient only; nobody subscribes to it.
TEST_EVENT = "notification.test"
SIGNATURE_HEADER = "X-Sortloop-Signature"

_TRIGGER_KEY = "sortloop_notify_trigger"
_PENDING_KEY = "sortloop_notify_pending"


def notify_on_commit(sessions: sessionmaker[Session], trigger: Callable[[], None]) -> None:
    """Sessions of ``sessions`` call ``trigger()`` after a commit that added events."""
    sessions.configure(info={_TRIGGER_KEY: trigger})


def emit_event(
    session: Session,
    event_type: str,
    *,
    run: FineTuningRun | None = None,
    model: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    only_to: str | None = None,
) -> NotificationEvent:
    """Record that ``event_type`` happened (in the caller's transaction)."""
    if event_type not in EVENT_TYPES and event_type != TEST_EVENT:
        raise ValueError(f"unknown event type {event_type!r}")
    subject: dict[str, Any] = {}
    if run is not None:
        subject["run"] = run_subject(run)
    if model is not None:
        subject["model"] = model
    if data:
        subject["data"] = data
    row = NotificationEvent(
        uid=str(uuid.uuid4()),
        type=event_type,
        created_at=utcnow(),
        run_id=run.id if run is not None else None,
        subject=subject,
        only_to=only_to,
    )
    session.add(row)
    _announce_after_commit(session)
    return row


def run_subject(run: FineTuningRun) -> dict[str, Any]:
    """What a delivery says about a run."""
    return {
        "id": run.id,
        "status": run.status,
        "version": run.version,
        "error": run.error,
        "created_by": run.created_by,
        "accuracy": metric(run.results, "accuracy"),
        "baseline_accuracy": metric(run.results, "baseline_accuracy"),
        "meets_criteria": metric(run.results, "meets_criteria"),
    }


def _announce_after_commit(session: Session) -> None:
    trigger = session.info.get(_TRIGGER_KEY)
    if trigger is None or session.info.get(_PENDING_KEY):
        return
    session.info[_PENDING_KEY] = True

    def announce(committed: Session) -> None:
        committed.info[_PENDING_KEY] = False
        try:
            trigger()
        except Exception:  # the beat's sweep sends it later
            logger.warning("could not announce new notification events", exc_info=True)

    sqlalchemy_event.listen(session, "after_commit", announce, once=True)


def delivery_body(row: NotificationEvent) -> bytes:
    """The JSON a webhook receives for this event (the same bytes at every try)."""
    body = {
        "id": row.uid,
        "type": row.type,
        "time": row.created_at.isoformat(),
        "run": row.subject.get("run"),
        "model": row.subject.get("model"),
        **({"data": row.subject["data"]} if row.subject.get("data") else {}),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of the body keyed with the secret>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def describe(row: NotificationEvent) -> str:
    """One sentence for an email subject."""
    run = row.subject.get("run") or {}
    model = row.subject.get("model") or {}
    data = row.subject.get("data") or {}
    texts = {
        "run.completed": f"run {run.get('id')} completed",
        "run.failed": f"run {run.get('id')} failed: {run.get('error') or ''}".rstrip(": "),
        "run.cancelled": f"run {run.get('id')} was cancelled",
        "model.deployed": f"{model.get('version')} is now the model in use",
        "model.rolled_back": f"rolled back to {model.get('version')}",
        "auto_deploy.skipped": f"auto-deploy kept the model in use: {data.get('reason', '')}",
        "auto_train.started": f"auto-train started run {run.get('id')}",
        "model.load_failed": f"a process could not load {model.get('version')}",
        "shadow.report": f"shadow report for run {run.get('id')}",
        TEST_EVENT: "a test notification",
    }
    return texts.get(row.type, row.type)[:200]
