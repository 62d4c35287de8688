"""Model tasks on the `default` queue: classify the submissions waiting for a worker,
re-classify unreviewed submissions after a deploy (both in large batches), and compare two
models on their shared test set."""

from __future__ import annotations

import logging

from celery import shared_task

from shared import task_names
from shared.classifier.identity import base_model_version, run_version
from shared.db import session_scope
from shared.deployment.active_model import Classification, read_active_record
from shared.deployment.comparison import compare_models as compare_two_models
from shared.submissions.categories import active_category_specs
from shared.submissions.classification_queue import classify_pending as classify_waiting
from shared.submissions.reclassification import reclassify_unreviewed
from worker import state

logger = logging.getLogger(__name__)


@shared_task(name=task_names.RECLASSIFY, bind=True, acks_late=True)
def reclassify(self, dry_run: bool = True, actor: str | None = None) -> dict:
    """Run the active model over submissions no admin has reviewed; progress as PROGRESS."""
    config = state.config()
    factory = state.session_factory()
    with session_scope(factory) as session:
        wanted = read_active_record(session, config.models_dir)
    model = state.active_model()  # this process's model, kept from task to task
    model.refresh()  # the deploy that asked for this task must be what it uses
    classifier, version = model.classifier()
    expected = (
        base_model_version(config.base_model)
        if wanted.run_id is None
        else run_version(wanted.run_id)
    )
    if version != expected:
        # ActiveModel falls back to the base model when an adapter fails to load; a
        # re-classification must use the model that was deployed, or nothing.
        raise RuntimeError(f"the active model {expected} could not be loaded (got {version})")

    def progress(done: int, total: int) -> None:
        self.update_state(state="PROGRESS", meta={"done": done, "total": total, "dry_run": dry_run})

    logger.info(
        "task=reclassify task_id=%s dry_run=%s version=%s", self.request.id, dry_run, version
    )
    with session_scope(factory) as session:
        return reclassify_unreviewed(
            session,
            lambda texts, categories: Classification(
                classifier.classify(texts, categories), version
            ),
            active_category_specs(session),
            dry_run=dry_run,
            actor=actor,
            progress=progress,
            batch_size=config.worker_batch_size,
        )


@shared_task(name=task_names.CLASSIFY_PENDING, bind=True, acks_late=True)
def classify_pending(self) -> dict:
    """Classify every submission waiting for a worker, in batches; progress as PROGRESS.

    Enqueued after each deferred submission or import (and by beat as a sweep): a task
    finds what all of them left waiting, so a burst is classified in a few batches."""
    config = state.config()

    def progress(done: int, total: int) -> None:
        if done:
            self.update_state(state="PROGRESS", meta={"done": done, "total": total})

    with session_scope(state.session_factory()) as session:
        done = classify_waiting(
            session, state.shadow_model(), batch_size=config.worker_batch_size, progress=progress
        )
    if done:
        logger.info("task=classify_pending task_id=%s classified=%d", self.request.id, done)
    return {"classified": done}


@shared_task(name=task_names.COMPARE_MODELS, bind=True)
def compare_models(self, a: str, b: str) -> dict:
    """Both models on their shared held-out examples (``shared.deployment.comparison``);
    a model that cannot be loaded fails the task with the reason."""
    logger.info("task=compare_models task_id=%s a=%s b=%s", self.request.id, a, b)
    with session_scope(state.session_factory()) as session:
        return compare_two_models(session, state.config(), a, b)
