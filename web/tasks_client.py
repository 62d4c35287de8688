"""Enqueue work by task name: web never imports worker code (or the training stack)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from celery import Celery
from flask import Flask, current_app

from shared import task_names
from shared.notifications.events import notify_on_commit

logger = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    config = app.config["SORTLOOP"]
    client = Celery("sortloop-web", broker=config.broker_url, backend=config.result_backend)
    client.conf.update(
        **task_names.messaging_settings(),
        # Fail fast when the broker is down: the API answers 503 within seconds.
        broker_connection_retry=False,
        broker_connection_max_retries=0,
        broker_transport_options={"max_retries": 1, "socket_connect_timeout": 2},
        redis_socket_connect_timeout=2,
        redis_socket_timeout=5,
    )
    app.extensions["sortloop_celery"] = client
    notify_on_commit(app.extensions["sortloop_sessions"], _announcer(client))


def _announcer(client: Celery):
    """After a commit that added notification events, ask the worker to send them, from a
    background thread: no request waits on the broker, and nothing is sent from a
    request (the worker's beat sweeps up an announcement that was lost)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sortloop-notify")

    def send() -> None:
        try:
            client.send_task(
                task_names.DISPATCH_NOTIFICATIONS,
                queue=task_names.DEFAULT_QUEUE,
                retry=False,
                ignore_result=True,
            )
        except Exception:  # the beat's sweep sends the events
            logger.warning("could not announce notification events", exc_info=True)

    return lambda: pool.submit(send)


def celery_client() -> Celery:
    return current_app.extensions["sortloop_celery"]


def broker_is_reachable(timeout: float = 2.0) -> bool:
    try:
        with celery_client().connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
        return True
    except Exception:
        return False


def enqueue_classification() -> str | None:
    """Ask a worker to classify the submissions waiting for one; the task id, or None
    when the broker is down (beat's sweep enqueues it again: nothing is lost)."""
    try:
        return (
            celery_client()
            .send_task(
                task_names.CLASSIFY_PENDING,
                queue=task_names.queue_of(task_names.CLASSIFY_PENDING),
                ignore_result=True,  # nobody waits on it: the rows say how far it got
            )
            .id
        )
    except Exception as error:  # kombu and redis-py raise their own
        logger.warning("classification not enqueued (beat will sweep) error=%s", error)
        return None
