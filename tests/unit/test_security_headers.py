"""Every admin response says: no framing, no MIME sniffing, no referrer to other sites,
scripts and styles from this site only."""

from __future__ import annotations

import pytest

from tests.unit.test_sessions import admin, log_in  # noqa: F401  (fixture and helper)

ADMIN_RESPONSES = [
    ("GET", "/admin/login", False),
    ("GET", "/admin/submissions", True),
    ("GET", "/admin/training", True),
    ("GET", "/admin/api/settings", True),
    ("GET", "/admin/api/settings", False),  # 401 JSON
    ("GET", "/admin/api/no-such-thing", True),  # 404 JSON
    ("POST", "/admin/api/categories", True),  # 400 JSON
    ("GET", "/admin/submissions", False),  # redirect to the login page
    ("GET", "/static/admin.js", False),
    ("GET", "/", False),
]


@pytest.mark.parametrize(("method", "path", "as_admin"), ADMIN_RESPONSES)
def test_security_headers_on_every_response(client, admin_headers, method, path, as_admin):
    response = client.open(path, method=method, headers=admin_headers if as_admin else {})
    headers = response.headers
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    policy = dict(
        part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";")
    )
    assert policy["frame-ancestors"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'self'"


def test_the_throttled_login_page_has_them_too(client, admin):  # noqa: F811
    for _ in range(11):
        response = log_in(client, password="wrong")
    assert response.status_code == 429
    assert response.headers["X-Frame-Options"] == "DENY"


def test_pages_use_no_inline_script_or_style(client, admin_headers, session):
    """What the policy refuses: the pages must not need it."""
    import re

    from tests.factories import make_run

    run = make_run(
        session,
        status="completed",
        results={"confusion_matrix": [[3, 1], [0, 4]], "labels": ["a", "b"]},
    )
    session.commit()
    for path in ("/", "/admin/submissions", "/admin/training", f"/admin/training/runs/{run.id}"):
        page = client.get(path, headers=admin_headers).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), path
        assert not re.search(r"\sstyle=|<style", page), path
        assert not re.search(r"\son[a-z]+=", page), path


@pytest.mark.parametrize("secure", [False, True])
def test_the_session_cookie_follows_session_cookie_secure(config, admin, secure):  # noqa: F811
    from web import create_app

    client = create_app(config.with_overrides(session_cookie_secure=secure)).test_client()
    response = log_in(client)
    cookie = next(v for v in response.headers.getlist("Set-Cookie") if v.startswith("session="))
    assert ("Secure" in cookie) is secure
    assert "HttpOnly" in cookie
