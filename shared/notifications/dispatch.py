"""Fan-out and the record of every try: which event goes to which webhook or email
recipient, what each try answered, and how long to wait before the next one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import (
    EmailRecipient,
    NotificationDelivery,
    NotificationEvent,
    Webhook,
    utcnow,
)
from shared.notifications.events import delivery_body

MAX_RETRY_WAIT_SECONDS = 3600.0


@dataclass(frozen=True)
class Job:
    """One event to send to one target (``kind`` webhook or email)."""

    kind: str
    event_id: int
    target_id: int


def _wants(event: NotificationEvent, kind: str, target_id: int, events: list[str]) -> bool:
    if event.only_to is not None:
        return event.only_to == f"{kind}:{target_id}"
    return event.type in (events or [])


def dispatch_pending(session: Session, *, email: bool, limit: int = 200) -> list[Job]:
    """Mark the events nobody dispatched yet as dispatched and return what to send (the
    caller commits, then enqueues). Rows locked by another dispatcher are skipped."""
    events = list(
        session.scalars(
            select(NotificationEvent)
            .where(NotificationEvent.dispatched_at.is_(None))
            .order_by(NotificationEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not events:
        return []
    webhooks = list(session.scalars(select(Webhook).order_by(Webhook.id)))
    recipients = list(session.scalars(select(EmailRecipient).order_by(EmailRecipient.id)))
    jobs: list[Job] = []
    now = utcnow()
    for event in events:
        for webhook in webhooks:
            if _wants(event, "webhook", webhook.id, webhook.events):
                jobs.append(Job("webhook", event.id, webhook.id))
        for recipient in recipients if email else ():
            if _wants(event, "email", recipient.id, recipient.events):
                jobs.append(Job("email", event.id, recipient.id))
        event.dispatched_at = now
    return jobs


@dataclass(frozen=True)
class WebhookDelivery:
    """What one try of a webhook needs, read in a short transaction."""

    url: str
    secret: str
    body: bytes
    event_uid: str
    event_type: str


def webhook_delivery(session: Session, event_id: int, webhook_id: int) -> WebhookDelivery | None:
    """None when the event or the webhook is gone (deleted meanwhile: nothing to send)."""
    event, webhook = session.get(NotificationEvent, event_id), session.get(Webhook, webhook_id)
    if event is None or webhook is None:
        return None
    return WebhookDelivery(webhook.url, webhook.secret, delivery_body(event), event.uid, event.type)


def email_delivery(
    session: Session, event_id: int, recipient_id: int
) -> tuple[NotificationEvent, str] | None:
    event = session.get(NotificationEvent, event_id)
    recipient = session.get(EmailRecipient, recipient_id)
    if event is None or recipient is None:
        return None
    session.expunge(event)
    return event, recipient.address


def record_attempt(
    session: Session,
    job: Job,
    attempt: int,
    *,
    ok: bool,
    will_retry: bool,
    status_code: int | None = None,
    error: str | None = None,
) -> None:
    session.add(
        NotificationDelivery(
            target_kind=job.kind,
            target_id=job.target_id,
            event_id=job.event_id,
            attempt=attempt,
            created_at=utcnow(),
            ok=ok,
            status_code=status_code,
            error=error[:2000] if error else None,
            will_retry=will_retry,
        )
    )


def retry_wait(first_wait: float, attempt: int) -> float:
    """Seconds before try ``attempt + 1``: ``first_wait`` doubled at every try, at most an
    hour (10 s, 20 s, 40 s, ...)."""
    return min(MAX_RETRY_WAIT_SECONDS, first_wait * 2 ** (attempt - 1))
