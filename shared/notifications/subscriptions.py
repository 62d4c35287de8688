"""Who hears what: webhooks (a URL, the events it wants, the secret that signs them) and
email recipients (an address and its events), and the record of every delivery try."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from shared.errors import InvalidInput, NotFound
from shared.models import EmailRecipient, NotificationDelivery, NotificationEvent, Webhook
from shared.notifications.events import EVENT_TYPES, TEST_EVENT, emit_event

MAX_URL_LENGTH = 2000
MAX_SECRET_LENGTH = 200
MIN_SECRET_LENGTH = 8
# A plain address: something@domain.tld, no spaces, no display name.
ADDRESS = re.compile(r"[^@\s<>,;\"]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def check_webhook_url(url: str) -> str:
    """An http or https URL with a host, or InvalidInput saying what is wrong."""
    url = (url or "").strip()
    if not url:
        raise InvalidInput("url is required: the address that receives the POSTs")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise InvalidInput("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise InvalidInput("url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("url must start with http:// or https://")
    if not parts.hostname:
        raise InvalidInput("url has no host name")
    if parts.username or parts.password:
        raise InvalidInput("url must not carry a user name or password: use the secret")
    return url


def check_events(events: list[str] | None) -> list[str]:
    if not events:
        raise InvalidInput(f"events must name at least one of: {', '.join(EVENT_TYPES)}")
    unknown = sorted({event for event in events if event not in EVENT_TYPES})
    if unknown:
        raise InvalidInput(
            f"unknown event {unknown[0]!r}; the events are: {', '.join(EVENT_TYPES)}"
        )
    return [event for event in EVENT_TYPES if event in events]


def check_address(address: str) -> str:
    address = (address or "").strip()
    if len(address) > 320 or not ADDRESS.fullmatch(address):
        raise InvalidInput("address must be one email address, like admin@example.org")
    return address


# --- webhooks ---------------------------------------------------------------------------


def create_webhook(
    session: Session, url: str, events: list[str], secret: str | None, actor: str | None
) -> tuple[Webhook, str]:
    """A new webhook (committed) and its secret: the one given, or a new random one."""
    url, events = check_webhook_url(url), check_events(events)
    if secret is None or secret == "":
        secret = secrets.token_hex(32)
    elif not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH:
        raise InvalidInput(
            f"secret must have {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} characters "
            "(leave it out and one is made for you)"
        )
    webhook = Webhook(url=url, events=events, secret=secret, created_by=actor)
    session.add(webhook)
    session.commit()
    return webhook, secret


def get_webhook(session: Session, webhook_id: int) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    return webhook


def list_webhooks(session: Session) -> list[Webhook]:
    return list(session.scalars(select(Webhook).order_by(Webhook.id)))


def delete_webhook(session: Session, webhook_id: int) -> None:
    webhook = get_webhook(session, webhook_id)
    _delete_deliveries(session, "webhook", webhook.id)
    session.delete(webhook)
    session.commit()


def webhook_to_dict(webhook: Webhook, session: Session | None = None) -> dict[str, Any]:
    """A webhook as the API shows it: never its secret."""
    answer: dict[str, Any] = {
        "id": webhook.id,
        "url": webhook.url,
        "events": list(webhook.events or []),
        "created_at": webhook.created_at.isoformat() if webhook.created_at else None,
        "created_by": webhook.created_by,
    }
    if session is not None:
        answer["last_delivery"] = _last_delivery(session, "webhook", webhook.id)
    return answer


# --- email recipients -------------------------------------------------------------------


def create_email_recipient(
    session: Session, address: str, events: list[str], actor: str | None
) -> EmailRecipient:
    recipient = EmailRecipient(
        address=check_address(address), events=check_events(events), created_by=actor
    )
    session.add(recipient)
    session.commit()
    return recipient


def get_email_recipient(session: Session, recipient_id: int) -> EmailRecipient:
    recipient = session.get(EmailRecipient, recipient_id)
    if recipient is None:
        raise NotFound(f"email recipient {recipient_id} does not exist")
    return recipient


def list_email_recipients(session: Session) -> list[EmailRecipient]:
    return list(session.scalars(select(EmailRecipient).order_by(EmailRecipient.id)))


def delete_email_recipient(session: Session, recipient_id: int) -> None:
    recipient = get_email_recipient(session, recipient_id)
    _delete_deliveries(session, "email", recipient.id)
    session.delete(recipient)
    session.commit()


def recipient_to_dict(recipient: EmailRecipient, session: Session | None = None) -> dict:
    answer: dict[str, Any] = {
        "id": recipient.id,
        "address": recipient.address,
        "events": list(recipient.events or []),
        "created_at": recipient.created_at.isoformat() if recipient.created_at else None,
        "created_by": recipient.created_by,
    }
    if session is not None:
        answer["last_delivery"] = _last_delivery(session, "email", recipient.id)
    return answer


# --- tests and deliveries ---------------------------------------------------------------


def send_test(session: Session, target_kind: str, target_id: int) -> NotificationEvent:
    """A test event for this one webhook or recipient (committed; sent by the worker)."""
    if target_kind == "webhook":
        get_webhook(session, target_id)
    else:
        get_email_recipient(session, target_id)
    row = emit_event(
        session, TEST_EVENT, data={"message": "a test from Sortloop"},
        only_to=f"{target_kind}:{target_id}",
    )  # fmt: skip
    session.commit()
    return row


def deliveries(
    session: Session, target_kind: str, target_id: int, limit: int = 200
) -> list[dict[str, Any]]:
    """The tries for this webhook or recipient, newest first."""
    rows = session.execute(
        select(NotificationDelivery, NotificationEvent.uid, NotificationEvent.type)
        .join(NotificationEvent, NotificationEvent.id == NotificationDelivery.event_id)
        .where(
            NotificationDelivery.target_kind == target_kind,
            NotificationDelivery.target_id == target_id,
        )
        .order_by(NotificationDelivery.id.desc())
        .limit(limit)
    ).all()
    return [delivery_to_dict(row, uid, kind) for row, uid, kind in rows]


def delivery_to_dict(row: NotificationDelivery, event_uid: str, event_type: str) -> dict:
    return {
        "id": row.id,
        "event_id": event_uid,
        "event_type": event_type,
        "attempt": row.attempt,
        "ok": row.ok,
        "status_code": row.status_code,
        "error": row.error,
        "will_retry": row.will_retry,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }


def _last_delivery(session: Session, target_kind: str, target_id: int) -> dict | None:
    found = deliveries(session, target_kind, target_id, limit=1)
    return found[0] if found else None


def count_deliveries(session: Session, target_kind: str, target_id: int) -> int:
    return session.scalar(
        select(func.count()).where(
            NotificationDelivery.target_kind == target_kind,
            NotificationDelivery.target_id == target_id,
        )
    )


def _delete_deliveries(session: Session, target_kind: str, target_id: int) -> None:
    session.execute(
        delete(NotificationDelivery).where(
            NotificationDelivery.target_kind == target_kind,
            NotificationDelivery.target_id == target_id,
        )
    )
