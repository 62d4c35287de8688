"""Fuzz tier: Schemathesis against a live app (a real HTTP server on PostgreSQL).

The integration tier's fixtures give the throwaway database, Redis and config.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from tests.integration.conftest import *  # noqa: F403  (the database, Redis and config fixtures)


@pytest.fixture(scope="session")
def live_app_url(config) -> Iterator[str]:
    """The app served over HTTP on a free local port for the whole session."""
    from web import create_app

    app = create_app(config)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
