"""Sessions that end: logout and a new password revoke every copy of the cookie, an idle
session expires, and the 11th wrong password in a minute is refused."""

from __future__ import annotations

import re

import pytest

from shared.models import AdminUser

USERNAME, PASSWORD = "session-admin", "session-password"


@pytest.fixture
def admin(session) -> AdminUser:
    user = AdminUser(username=USERNAME)
    user.set_password(PASSWORD)
    session.add(user)
    session.commit()
    return user


def login_token(client) -> str:
    page = client.get("/admin/login").get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def log_in(client, username: str = USERNAME, password: str = PASSWORD):
    return client.post(
        "/admin/login",
        data={"username": username, "password": password, "csrf_token": login_token(client)},
    )


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def csrf_token(client) -> str:
    page = client.get("/admin/settings").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def test_a_cookie_captured_before_logout_is_refused_after_it(app, client, admin):
    assert log_in(client).status_code == 302
    captured = session_cookie(client)
    assert client.get("/admin/api/settings").status_code == 200

    client.post("/admin/logout", data={"csrf_token": csrf_token(client)})

    replay = app.test_client()
    replay.set_cookie("session", captured)
    assert replay.get("/admin/api/settings").status_code == 401
    assert replay.post("/admin/api/settings", json={"auto_train": True}).status_code == 401


def test_a_new_password_ends_the_sessions_made_with_the_old_one(app, client, session, admin):
    log_in(client)
    assert client.get("/admin/api/settings").status_code == 200

    admin.set_password("a-brand-new-password")
    session.commit()

    assert client.get("/admin/api/settings").status_code == 401
    other = app.test_client()
    assert log_in(other, password="a-brand-new-password").status_code == 302
    assert other.get("/admin/api/settings").status_code == 200


def test_logging_in_again_after_logout_works(client, admin):
    log_in(client)
    client.post("/admin/logout", data={"csrf_token": csrf_token(client)})
    assert client.get("/admin/api/settings").status_code == 401
    log_in(client)
    assert client.get("/admin/api/settings").status_code == 200


def test_an_idle_session_expires(config, session, admin, monkeypatch):
    import time

    from web import create_app

    app = create_app(config.with_overrides(session_idle_minutes=5))
    client = app.test_client()
    log_in(client)
    assert client.get("/admin/api/settings").status_code == 200
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 4 * 60)
    assert client.get("/admin/api/settings").status_code == 200, "activity keeps it alive"
    monkeypatch.setattr(time, "time", lambda: now + 4 * 60 + 5 * 60 + 5)
    assert client.get("/admin/api/settings").status_code == 401


def test_the_eleventh_wrong_password_in_a_minute_is_refused(client, admin):
    for _ in range(10):
        assert log_in(client, password="wrong").status_code == 401
    refused = log_in(client, password="wrong")
    assert refused.status_code == 429
    assert "Too many failed logins" in refused.get_data(as_text=True)
    assert log_in(client).status_code == 429, "even the right password waits"


def test_the_account_is_throttled_from_every_address(app, admin):
    for number in range(10):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"10.0.0.{number}"
        assert log_in(client, password="wrong").status_code == 401
    fresh = app.test_client()
    fresh.environ_base["REMOTE_ADDR"] = "10.0.1.1"
    assert log_in(fresh, password="wrong").status_code == 429


def test_one_client_is_throttled_across_accounts(client, admin):
    for number in range(10):
        assert log_in(client, username=f"guess-{number}", password="wrong").status_code == 401
    assert log_in(client, username="another-guess", password="wrong").status_code == 429


def test_successful_logins_do_not_count(client, admin):
    for _ in range(12):
        assert log_in(client).status_code == 302
