"""gunicorn settings for the web tier: ``gunicorn -c python:web.gunicorn_conf 'web:create_app()'``.

Processes and threads come from Sortloop's configuration (``shared.compute``): one
worker process per core (at least 2, ``SORTLOOP_WEB_WORKERS``), each with
``SORTLOOP_WEB_THREADS`` request threads whose classifications share batches
(``web.analyzer``), and one compute thread per process on small hosts (set in
``create_app``). The app is not preloaded: each worker loads and watches the model
itself after the fork. A command-line flag still wins over these.
"""

from __future__ import annotations

from shared.compute import available_cores, web_workers
from shared.config import Config

_config = Config.from_env()

bind = "0.0.0.0:8000"  # compose publishes it; ``--bind`` on the command line wins
workers = web_workers(_config)
worker_class = "gthread"
threads = _config.web_threads
timeout = 120
graceful_timeout = 30
preload_app = False


def when_ready(server: object) -> None:
    server.log.info(  # type: ignore[attr-defined]
        "web tier: %d worker processes x %d threads on %d cores",
        workers,
        threads,
        available_cores(),
    )
