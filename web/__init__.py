"""The Flask app: `gunicorn 'web:create_app()'` or `flask --app web run`."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask

from shared.config import Config, check_secret_key


def create_app(config: Config | None = None, *, serving: bool | None = None) -> Flask:
    """Build the app. Tests pass a Config; processes read theirs from the environment.

    ``serving`` (by default: when the config comes from the environment, as under
    gunicorn or ``flask run``) makes this a real web process: its compute threads are
    set (``shared.compute``) and the active model is loaded and watched from the start.
    A missing or guessable SECRET_KEY stops here first (ConfigError naming it), before
    any request could be served with a forgeable session.
    """
    serving = config is None if serving is None else serving
    config = config or Config.from_env()
    check_secret_key(config.secret_key)
    if serving:
        from shared import compute

        compute.configure("web", config)
    app = Flask(__name__)
    app.config.update(
        SORTLOOP=config,
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.session_cookie_secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=config.session_cookie_secure,
        # Sessions are permanent and re-signed on every request: Flask refuses a cookie
        # signed longer ago than this, so it is an idle timeout enforced by the server.
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=config.session_idle_minutes),
        SESSION_REFRESH_EACH_REQUEST=True,
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in a before_request hook unless a bearer token
        RATELIMIT_STORAGE_URI=config.ratelimit_storage_url,
        RATELIMIT_HEADERS_ENABLED=True,
        MAX_CONTENT_LENGTH=64 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    from web import analyzer, api_spec, db, errors, input_guard, security_headers, tasks_client
    from web.extensions import csrf, limiter, login_manager

    input_guard.init_app(app)  # first: its converter must exist before any route
    security_headers.init_app(app, config)
    db.init_app(app)
    tasks_client.init_app(app)
    analyzer.init_app(app, serving=serving)
    errors.init_app(app)
    api_spec.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"

    from web import auth, flower, public
    from web.admin import bp as admin_bp
    from web.admin_api import bp as admin_api_bp

    auth.protect_forms_from_csrf(app)
    app.register_blueprint(public.bp)
    api_spec.api.register_blueprint(public.api_bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(admin_bp)
    api_spec.api.register_blueprint(admin_api_bp)
    flower.init_app(app)
    return app
