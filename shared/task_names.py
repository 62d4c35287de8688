"""Celery task names and queues. Web enqueues by these names and never imports worker
code; ``messaging_settings`` is what the worker's app and web's client both configure."""

from __future__ import annotations

from typing import Any

PING = "sortloop.ping"
VALIDATE_DATA = "sortloop.validate_data"
TRAIN = "sortloop.train"
EVALUATE = "sortloop.evaluate"
REAP_STALE_RUNS = "sortloop.reap_stale_runs"
AUTO_TRAIN = "sortloop.auto_train"
RECLASSIFY = "sortloop.reclassify"
COMPARE_MODELS = "sortloop.compare_models"
DISPATCH_NOTIFICATIONS = "sortloop.dispatch_notifications"
DELIVER_WEBHOOK = "sortloop.deliver_webhook"
SEND_EMAIL = "sortloop.send_notification_email"
SHADOW_REPORT = "sortloop.shadow_report"
CLASSIFY_PENDING = "sortloop.classify_pending"

TRAINING_QUEUE = "training"
DEFAULT_QUEUE = "default"

# Which queue each task goes to: the GPU worker consumes only `training`.
ROUTES = {
    VALIDATE_DATA: TRAINING_QUEUE,
    TRAIN: TRAINING_QUEUE,
    EVALUATE: TRAINING_QUEUE,
}


def messaging_settings() -> dict[str, Any]:
    """Serialisation, queues and routes: the Celery settings the worker app and the web
    client must agree on (each adds its own reliability settings)."""
    from kombu import Queue

    return {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_default_queue": DEFAULT_QUEUE,
        "task_queues": (
            Queue(TRAINING_QUEUE, routing_key=TRAINING_QUEUE),
            Queue(DEFAULT_QUEUE, routing_key=DEFAULT_QUEUE),
        ),
        "task_routes": {name: {"queue": queue} for name, queue in ROUTES.items()},
    }
