"""Unit tier: no services. SQLite in a temporary directory; the broker is a closed port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from shared.config import Config
from shared.db import make_engine, make_session_factory
from shared.models import Base

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture
def config(tmp_path) -> Config:
    return Config.from_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'unit.db'}",
            "CELERY_BROKER_URL": UNREACHABLE_BROKER,
            "CELERY_RESULT_BACKEND": UNREACHABLE_BROKER,
            "MODELS_DIR": str(tmp_path / "models"),
            "SECRET_KEY": "unit-test-secret-3f9c1a7e5b2d8064c1f7a9e3",
            "SORTLOOP_ADMIN_TOKEN": "unit-token",
        }
    )


@pytest.fixture
def session(config) -> Iterator[Session]:
    engine = make_engine(config.database_url)
    Base.metadata.create_all(engine)
    session = make_session_factory(engine)()
    yield session
    session.close()
    engine.dispose()


@pytest.fixture
def app(config, session):
    from web import create_app

    app = create_app(config)
    app.config.update(TESTING=True)
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": "Bearer unit-token"}


@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory) -> str:
    """The one tiny random MNLI-shaped BART of the unit tests (the NLI code path)."""
    from shared.classifier.tiny import build_tiny_nli_model

    return build_tiny_nli_model(tmp_path_factory.mktemp("tiny-bart"))
