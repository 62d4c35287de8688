"""Session revocation on the migrated PostgreSQL schema (the unit tier uses create_all):
a cookie captured before logout is refused after it."""

from __future__ import annotations

import re

from shared.models import AdminUser


def test_a_cookie_replayed_after_logout_is_refused_on_postgres(app, client, session):
    user = AdminUser(username="pg-admin")
    user.set_password("pg-password-123")
    session.add(user)
    session.commit()
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    login = client.post(
        "/admin/login",
        data={"username": "pg-admin", "password": "pg-password-123", "csrf_token": token},
    )
    assert login.status_code == 302
    captured = client.get_cookie("session").value
    settings = client.get("/admin/settings").get_data(as_text=True)
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', settings).group(1)

    assert client.post("/admin/logout", data={"csrf_token": csrf}).status_code == 302

    replay = app.test_client()
    replay.set_cookie("session", captured)
    assert replay.get("/admin/api/runs").status_code == 401
    session.expire_all()
    assert session.get(AdminUser, user.id).session_version == 2
