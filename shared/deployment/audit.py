"""The audit trail: the one recorder of DeploymentEvent rows, and reading them back.

Deploys, rollbacks, skipped auto-deploys, imports, models that failed to load in a
process, re-classifications and shadows started or ended are all recorded through
``record_event``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import DeploymentEvent, FineTuningRun
from shared.notifications.events import emit_event

ACTIONS = ("deploy", "rollback", "import", "load", "reclassify", "shadow")


def record_event(
    session: Session,
    action: str,
    *,
    actor: str,
    outcome: str = "ok",
    run_id: int | None = None,
    from_version: str | None = None,
    to_version: str | None = None,
    detail: str | dict[str, Any] | None = None,
) -> DeploymentEvent:
    """Add one event (flushed, not committed: it belongs to the caller's transaction).
    A dict ``detail`` is stored whole as JSON and read back as a dict; a sentence is
    cut at 2,000 characters."""
    if action not in ACTIONS:
        raise ValueError(f"unknown deployment action {action!r}; expected one of {ACTIONS}")
    detail = json.dumps(detail) if isinstance(detail, dict) else detail and detail[:2000]
    event = DeploymentEvent(
        action=action,
        run_id=run_id,
        from_version=from_version,
        to_version=to_version,
        actor=actor[:100],
        outcome=outcome,
        detail=detail,
    )
    session.add(event)
    session.flush()
    _notify(session, event)
    return event


# Which audited changes webhooks and email hear of, by (action, outcome).
NOTIFIED = {
    ("deploy", "ok"): "model.deployed",
    ("rollback", "ok"): "model.rolled_back",
    ("deploy", "skipped"): "auto_deploy.skipped",
    ("load", "failed"): "model.load_failed",
}


def _notify(session: Session, event: DeploymentEvent) -> None:
    event_type = NOTIFIED.get((event.action, event.outcome))
    if event_type is None:
        return
    run = session.get(FineTuningRun, event.run_id) if event.run_id is not None else None
    version = event.from_version if event_type == "auto_deploy.skipped" else event.to_version
    model = {"version": version, "run_id": event.run_id, "previous_version": event.from_version}
    data = {"actor": event.actor}
    if event.detail:
        data["reason" if event_type != "model.deployed" else "detail"] = event.detail
    emit_event(session, event_type, run=run, model=model, data=data)


def deployment_history(session: Session, limit: int = 50) -> list[DeploymentEvent]:
    """The audit trail, newest first."""
    return list(
        session.scalars(
            select(DeploymentEvent)
            .order_by(DeploymentEvent.created_at.desc(), DeploymentEvent.id.desc())
            .limit(limit)
        )
    )


def event_to_dict(event: DeploymentEvent) -> dict[str, Any]:
    detail: Any = event.detail
    if detail and detail.startswith(("{", "[")):
        with contextlib.suppress(json.JSONDecodeError):
            detail = json.loads(detail)
    return {
        "id": event.id,
        "action": event.action,
        "run_id": event.run_id,
        "from_version": event.from_version,
        "to_version": event.to_version,
        "actor": event.actor,
        "outcome": event.outcome,
        "detail": detail,
        "created_at": None if event.created_at is None else event.created_at.isoformat(),
    }
