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
# Bulk classification with the model in use: the waiting submissions and the
# re-classification after a deploy. compose gives it a worker of its own on the GPU
# (a heavy model classifies in seconds there, and never behind a training run);
# locally the CPU worker consumes it beside `default`.
INFERENCE_QUEUE = "inference"
QUEUES = (TRAINING_QUEUE, DEFAULT_QUEUE, INFERENCE_QUEUE)

# Which queue each task goes to (every other task: `default`). The training worker
# consumes only `training`.
ROUTES = {
    VALIDATE_DATA: TRAINING_QUEUE,
    TRAIN: TRAINING_QUEUE,
    EVALUATE: TRAINING_QUEUE,
    CLASSIFY_PENDING: INFERENCE_QUEUE,
    RECLASSIFY: INFERENCE_QUEUE,
}


def queue_of(task_name: str) -> str:
    """The queue ``task_name`` is sent to."""
    return ROUTES.get(task_name, DEFAULT_QUEUE)


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
        "task_queues": tuple(Queue(queue, routing_key=queue) for queue in QUEUES),
        "task_routes": {name: {"queue": queue} for name, queue in ROUTES.items()},
    }
