"""Training workers import the training stack once, before they fork their task children."""

from __future__ import annotations

import sys

from shared import task_names
from shared.config import Config
from worker.celery_app import create_celery
from worker.warmup import TRAINING_STACK, consumes_training_queue, preload_training_stack


def _app_consuming(*queues: str):
    app = create_celery(Config.from_env({}))
    if queues:
        app.amqp.queues.select(list(queues))
    return app


def test_only_workers_that_take_training_tasks_preload() -> None:
    assert consumes_training_queue(_app_consuming(task_names.TRAINING_QUEUE))
    assert consumes_training_queue(
        _app_consuming(task_names.TRAINING_QUEUE, task_names.DEFAULT_QUEUE)
    )
    assert consumes_training_queue(_app_consuming())  # no -Q: every queue
    assert not consumes_training_queue(_app_consuming(task_names.DEFAULT_QUEUE))


def test_preload_imports_the_whole_training_stack() -> None:
    seconds = preload_training_stack()
    assert seconds >= 0
    assert all(name in sys.modules for name in TRAINING_STACK)
