"""The worker's own state: the database session factory, made on first use."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from shared.config import Config
from shared.db import make_engine, make_session_factory


@lru_cache(maxsize=1)
def config() -> Config:
    from worker.celery_app import celery

    return celery.sortloop_config


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker[Session]:
    return make_session_factory(make_engine(config().database_url))


@lru_cache(maxsize=1)
def active_model():
    """This worker process's model in use, loaded once and reloaded on a deploy (batch
    classification of waiting submissions reuses it from task to task)."""
    from shared.deployment.active_model import ActiveModel

    return ActiveModel(config(), session_factory(), owner="worker")
