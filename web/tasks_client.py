"""Enqueue work by task name: web never imports worker code (or the training stack)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
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
    app.extensions["sortloop_classify_announcer"] = Debounced(
        _classification_sender(client), CLASSIFY_ANNOUNCE_INTERVAL_SECONDS
    )
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
        except Exception as error:  # kombu and redis-py raise their own; beat sweeps them
            logger.warning("notification events not announced (beat will sweep) error=%s", error)

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


# At most one classification task per web process in this many seconds: a burst of
# submissions waiting for a worker is announced by a few tasks, not one per submission
# (each task drains every waiting row; the rest would only find nothing to do).
CLASSIFY_ANNOUNCE_INTERVAL_SECONDS = 0.5


class Debounced:
    """Calls ``send`` at once, or, within ``interval`` of the last call, once when the
    interval is over: every call is followed by a ``send`` that starts after it (a row
    committed before the call is seen by the task that ``send`` enqueues), and a burst
    of calls costs one ``send`` per interval. Thread-safe; the delayed ``send`` runs in
    a daemon timer thread."""

    def __init__(
        self,
        send: Callable[[], object],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._pending: threading.Timer | None = None

    def __call__(self) -> bool:
        """True when sent now, False when a later send covers this call."""
        with self._lock:
            if self._pending is not None:
                return False  # the scheduled send starts after this call
            now = self._clock()
            wait = 0.0 if self._last is None else self._last + self._interval - now
            if wait > 0:
                self._pending = threading.Timer(wait, self._send_later)
                self._pending.daemon = True
                self._pending.start()
                return False
            self._last = now
        self._send()
        return True

    def _send_later(self) -> None:
        with self._lock:
            self._pending = None
            self._last = self._clock()
        self._send()


def _classification_sender(client: Celery) -> Callable[[], None]:
    def send() -> None:
        try:
            client.send_task(
                task_names.CLASSIFY_PENDING,
                queue=task_names.queue_of(task_names.CLASSIFY_PENDING),
                ignore_result=True,  # nobody waits on it: the rows say how far it got
            )
        except Exception as error:  # kombu and redis-py raise their own
            logger.warning("classification not enqueued (beat will sweep) error=%s", error)

    return send


def enqueue_classification() -> bool:
    """Ask a worker to classify the submissions waiting for one, now or within
    ``CLASSIFY_ANNOUNCE_INTERVAL_SECONDS`` (``Debounced``). When the broker is down the
    beat's sweep enqueues it again: nothing is lost."""
    return current_app.extensions["sortloop_classify_announcer"]()
