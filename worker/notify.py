"""Sending a notification: one signed HTTP POST, one email over SMTP. Plain Python (the
tasks in ``worker.tasks_notifications`` record each try and retry)."""

from __future__ import annotations

import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage

from shared.config import Config
from shared.models import NotificationEvent
from shared.notifications.events import SIGNATURE_HEADER, delivery_body, describe, sign

USER_AGENT = "Sortloop-Webhooks/1"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a place to send the body again."""

    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post_webhook(
    url: str, body: bytes, secret: str, event_uid: str, event_type: str, timeout: float
) -> Outcome:
    """POST ``body`` signed with ``secret``; any 2xx is delivered, anything else is not."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(body, secret),
            "X-Sortloop-Event": event_type,
            "X-Sortloop-Delivery": event_uid,
        },
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        return Outcome(False, error.code, f"the receiver answered {error.code} {error.reason}")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return Outcome(False, None, f"no answer: {reason}")
    if 200 <= status < 300:
        return Outcome(True, status)
    return Outcome(False, status, f"the receiver answered {status}")


def email_message(config: Config, event: NotificationEvent, address: str) -> EmailMessage:
    """The email of one event: the sentence as subject, the delivery's JSON as its body."""
    message = EmailMessage()
    message["From"] = config.smtp_from
    message["To"] = address
    message["Subject"] = f"[Sortloop] {describe(event)}"
    message["X-Sortloop-Event"] = event.type
    body = delivery_body(event).decode()
    message.set_content(
        f"{describe(event)}\n\nEvent: {event.type}\nTime: {event.created_at.isoformat()}\n\n"
        f"The event as JSON (what webhooks receive):\n{body}\n"
    )
    return message


def send_email(config: Config, message: EmailMessage) -> Outcome:
    """Send over ``SORTLOOP_SMTP_*``: STARTTLS, implicit TLS or plain, with a login if set."""
    timeout = config.webhook_timeout_seconds
    try:
        if config.smtp_tls == "ssl":
            client = smtplib.SMTP_SSL(
                config.smtp_host, config.smtp_port, timeout=timeout,
                context=ssl.create_default_context(),
            )  # fmt: skip
        else:
            client = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=timeout)
        with client:
            if config.smtp_tls == "starttls":
                client.starttls(context=ssl.create_default_context())
            if config.smtp_username:
                client.login(config.smtp_username, config.smtp_password)
            client.send_message(message)
    except smtplib.SMTPResponseException as error:
        return Outcome(False, error.smtp_code, f"the SMTP server answered {error.smtp_code}")
    except (smtplib.SMTPException, OSError) as error:
        return Outcome(False, None, f"{error.__class__.__name__}: {error}")
    return Outcome(True)
