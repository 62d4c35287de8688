"""Celery tasks: thin wrappers that take ids, change state and call the core."""

from __future__ import annotations

import logging
import os
import socket

from celery import shared_task

from shared import task_names

logger = logging.getLogger(__name__)


@shared_task(name=task_names.PING)
def ping(payload: str = "pong") -> dict[str, str | int]:
    """Round-trip check: proves a worker consumes the queue and the result backend works."""
    logger.info("task=ping payload=%s", payload)
    return {"payload": payload, "hostname": socket.gethostname(), "pid": os.getpid()}
