"""Import the training stack once, in a training worker's main process, before it forks.

The training worker runs each task in a fresh child (one task per child:
``worker.celery_app.tasks_per_child_for``; memory and GPU memory go back after
every step). Without this, every child would import torch, transformers, datasets and peft again (about 4-5 s on a
2-core CPU) before a training or evaluation step could start. Importing them in
the parent process once makes every forked child start with them loaded. Only
imports happen here, no tensor work and no CUDA initialisation, which keeps the
fork safe.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from celery.signals import celeryd_after_setup

from shared import task_names

logger = logging.getLogger(__name__)

TRAINING_STACK = (
    "torch",
    "datasets",
    "peft",
    "transformers",
    "transformers.models.bert.modeling_bert",
    "transformers.models.bart.modeling_bart",
    "worker.fine_tuning.engine",
    # every embedding run ends with the logistic head (scikit-learn, scipy's optimiser)
    "sklearn.linear_model",
    "scipy.optimize",
    "threadpoolctl",
    # and lists the labels to check (confident learning; 0.4 s to import, pandas with it)
    "cleanlab.filter",
)


def consumes_training_queue(app: Any) -> bool:
    """Whether a worker of ``app`` takes training tasks (no ``-Q`` means every queue)."""
    selected = app.amqp.queues.consume_from
    return not selected or task_names.TRAINING_QUEUE in selected


def preload_training_stack() -> float:
    """Import the modules every training step needs; return the seconds it took."""
    started = time.perf_counter()
    for name in TRAINING_STACK:
        importlib.import_module(name)
    return time.perf_counter() - started


@celeryd_after_setup.connect
def _preload_in_training_workers(sender: str, instance: Any, **_: Any) -> None:
    if not consumes_training_queue(instance.app):
        return
    try:
        seconds = preload_training_stack()
    except ImportError as error:  # a web-only install: the tasks will say what is missing
        logger.warning("training stack not preloaded: %s", error)
        return
    logger.info("training stack preloaded in %.1f s (children start with it)", seconds)
