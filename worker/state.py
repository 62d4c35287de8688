"""The worker's own state: the database session factory, made on first use."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from shared import task_names
from shared.config import Config
from shared.db import make_engine, make_session_factory
from shared.notifications.events import notify_on_commit


@lru_cache(maxsize=1)
def config() -> Config:
    from worker.celery_app import celery

    return celery.sortloop_config


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker[Session]:
    factory = make_session_factory(make_engine(config().database_url))
    notify_on_commit(factory, _announce_notifications)
    return factory


def _announce_notifications() -> None:
    """After a commit that added notification events: fan them out on `default`."""
    from worker.celery_app import celery

    celery.send_task(
        task_names.DISPATCH_NOTIFICATIONS, queue=task_names.DEFAULT_QUEUE, ignore_result=True
    )


@lru_cache(maxsize=1)
def active_model():
    """This worker process's model in use, loaded once and reloaded on a deploy (batch
    classification of waiting submissions reuses it from task to task)."""
    from shared.deployment.active_model import ActiveModel
    from worker.fine_tuning.devices import resolve_device

    device = resolve_device(config().inference_device)
    return ActiveModel(config(), session_factory(), owner="worker", device=device)


@lru_cache(maxsize=1)
def shadow_model():
    """The model in use with the run in shadow beside it (when one is): the submissions
    this worker classifies are scored by both, as the web tier's are."""
    from shared.deployment.shadow_model import ShadowModel

    return ShadowModel(active_model())
