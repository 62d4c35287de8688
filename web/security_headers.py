"""Security headers on every response (Flask-Talisman): no framing, no MIME sniffing, no
referrer to other sites, and a Content-Security-Policy that allows the app's own files only.

The pages load their scripts and styles from /static (no inline script or style), so
``'self'`` is all they need.
"""

from __future__ import annotations

from flask import Flask

from shared.config import Config
from web.extensions import talisman

CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def init_app(app: Flask, config: Config) -> None:
    talisman.init_app(
        app,
        # TLS ends at the proxy in front of web; SESSION_COOKIE_SECURE says whether it exists.
        force_https=False,
        session_cookie_secure=config.session_cookie_secure,
        session_cookie_http_only=True,
        frame_options="DENY",
        content_security_policy=CONTENT_SECURITY_POLICY,
        referrer_policy="same-origin",
        strict_transport_security=config.session_cookie_secure,
    )
