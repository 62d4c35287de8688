"""Flower, reached through the admin: ``/admin/flower/...`` is passed to Flower for
logged-in admins (or the admin token) only.

Flower runs with ``--url_prefix=admin/flower`` where only web can reach it (compose
publishes no port for it): every one of its paths, ``/metrics`` and ``/healthcheck``
included, which Flower itself serves without its password, is then behind the admin
login. Web sends Flower's own basic-auth credentials (``FLOWER_BASIC_AUTH``) and never
the admin's session cookie or bearer token. Werkzeug's ``ProxyMiddleware`` does the
passing on; Flower's own pages need inline scripts, so its answers get a CSP of their own.
"""

from __future__ import annotations

import base64
from http.cookies import SimpleCookie

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import NotFound
from werkzeug.middleware.http_proxy import ProxyMiddleware

from web.auth import admin_required, csrf_exempt
from web.extensions import talisman
from web.security_headers import CONTENT_SECURITY_POLICY

PREFIX = "/admin/flower/"
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
# Flower's cookie for its own CSRF check (tornado xsrf_cookies); no other cookie goes on.
FLOWER_COOKIES = ("_xsrf",)
# Flower's pages carry inline scripts and style attributes; still nothing from elsewhere.
FLOWER_CSP = {
    **CONTENT_SECURITY_POLICY,
    "script-src": "'self' 'unsafe-inline'",
    "style-src": "'self' 'unsafe-inline'",
}

bp = Blueprint("flower", __name__, url_prefix="/admin/flower")


def _not_configured(environ, start_response):
    return NotFound("Flower is not configured: set SORTLOOP_FLOWER_URL")(environ, start_response)


def init_app(app: Flask) -> None:
    config = app.config["SORTLOOP"]
    proxy = None
    if config.flower_url:
        headers = {"X-Forwarded-Prefix": PREFIX.rstrip("/")}
        if config.flower_basic_auth:
            token = base64.b64encode(config.flower_basic_auth.encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        proxy = ProxyMiddleware(
            _not_configured,
            {PREFIX: {"target": config.flower_url.rstrip("/") + PREFIX, "headers": headers}},
            timeout=30,
        )
    app.extensions["sortloop_flower_proxy"] = proxy
    app.register_blueprint(bp)


def _flower_cookies(header: str) -> str:
    cookies = SimpleCookie()
    try:
        cookies.load(header)
    except Exception:  # a malformed Cookie header: pass none on
        return ""
    return "; ".join(f"{name}={cookies[name].value}" for name in FLOWER_COOKIES if name in cookies)


@bp.route("/", defaults={"path": ""}, methods=METHODS)
@bp.route("/<path:path>", methods=METHODS)
@csrf_exempt  # Flower checks its own _xsrf token; the session cookie is SameSite=Lax
@admin_required
@talisman(content_security_policy=FLOWER_CSP)
def flower(path: str):
    proxy = current_app.extensions["sortloop_flower_proxy"]
    if proxy is None:
        raise NotFound("Flower is not configured: set SORTLOOP_FLOWER_URL")
    environ = dict(request.environ)
    environ.pop("HTTP_AUTHORIZATION", None)  # the admin token is not Flower's business
    cookies = _flower_cookies(environ.pop("HTTP_COOKIE", ""))
    if cookies:
        environ["HTTP_COOKIE"] = cookies
    return Response.from_app(proxy, environ)
