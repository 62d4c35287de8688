"""Notification tasks on the `default` queue: fan events out, deliver each webhook and
email with retries and exponential backoff, record every try. A dead receiver only
delays its own deliveries: no run, deploy or request waits for it."""

from __future__ import annotations

import logging

from celery import shared_task

from shared import task_names
from shared.db import session_scope
from shared.deployment.shadow import emit_daily_report
from shared.notifications.dispatch import (
    Job,
    dispatch_pending,
    email_delivery,
    record_attempt,
    retry_wait,
    webhook_delivery,
)
from worker import notify, state

logger = logging.getLogger(__name__)

SEND_TASKS = {"webhook": task_names.DELIVER_WEBHOOK, "email": task_names.SEND_EMAIL}


@shared_task(name=task_names.DISPATCH_NOTIFICATIONS, bind=True)
def dispatch_notifications(self) -> int:
    """Send every new event to the webhooks and recipients that want it (the web and the
    worker enqueue this after a commit that added events; beat sweeps too)."""
    config = state.config()
    with session_scope(state.session_factory()) as session:
        jobs = dispatch_pending(session, email=bool(config.smtp_host))
    for job in jobs:  # committed first: a job is never sent for an event rolled back
        self.app.send_task(
            SEND_TASKS[job.kind], args=[job.event_id, job.target_id],
            queue=task_names.DEFAULT_QUEUE, ignore_result=True,
        )  # fmt: skip
    if jobs:
        logger.info("task=dispatch_notifications jobs=%d", len(jobs))
    return len(jobs)


def _finish_try(task, job: Job, outcome: notify.Outcome) -> dict:
    """Record this try; retry later (doubling the wait) unless it worked or was the last."""
    config = state.config()
    attempt = task.request.retries + 1
    will_retry = not outcome.ok and attempt < config.notify_max_attempts
    with session_scope(state.session_factory()) as session:
        record_attempt(
            session, job, attempt, ok=outcome.ok, will_retry=will_retry,
            status_code=outcome.status_code, error=outcome.error,
        )  # fmt: skip
    logger.info(
        "task=%s event=%s target=%s attempt=%d ok=%s status=%s error=%s",
        job.kind, job.event_id, job.target_id, attempt, outcome.ok, outcome.status_code,
        outcome.error or "",
    )  # fmt: skip
    if will_retry:
        raise task.retry(
            countdown=retry_wait(config.notify_retry_seconds, attempt),
            max_retries=config.notify_max_attempts - 1,
        )
    return {"ok": outcome.ok, "attempt": attempt}


@shared_task(name=task_names.DELIVER_WEBHOOK, bind=True, acks_late=True)
def deliver_webhook(self, event_id: int, webhook_id: int) -> dict:
    """POST one event to one webhook, signed with its secret."""
    with session_scope(state.session_factory()) as session:
        delivery = webhook_delivery(session, int(event_id), int(webhook_id))
    if delivery is None:
        return {"ok": False, "attempt": 0, "skipped": "the webhook or event is gone"}
    outcome = notify.post_webhook(
        delivery.url, delivery.body, delivery.secret, delivery.event_uid, delivery.event_type,
        timeout=state.config().webhook_timeout_seconds,
    )  # fmt: skip
    return _finish_try(self, Job("webhook", int(event_id), int(webhook_id)), outcome)


@shared_task(name=task_names.SEND_EMAIL, bind=True, acks_late=True)
def send_notification_email(self, event_id: int, recipient_id: int) -> dict:
    """Email one event to one recipient over SMTP."""
    config = state.config()
    with session_scope(state.session_factory()) as session:
        found = email_delivery(session, int(event_id), int(recipient_id))
    if found is None:
        return {"ok": False, "attempt": 0, "skipped": "the recipient or event is gone"}
    event, address = found
    outcome = notify.send_email(config, notify.email_message(config, event, address))
    return _finish_try(self, Job("email", int(event_id), int(recipient_id)), outcome)


@shared_task(name=task_names.SHADOW_REPORT)
def shadow_report() -> dict | None:
    """While a run is in shadow, emit ``shadow.report`` with its figures once a day (beat
    runs this hourly; the event goes out like any other, to whoever subscribed)."""
    with session_scope(state.session_factory()) as session:
        return emit_daily_report(session)
