"""A forgeable session key never serves a request: the web process refuses to start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from shared.config import ConfigError, check_secret_key
from shared.models import AdminUser

ROOT = Path(__file__).resolve().parents[2]
OLD_DEVELOPMENT_KEY = "dev-secret-key-change-me"  # the default before issue 20


def env_example_value(name: str) -> str:
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f".env.example has no {name}")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "   ",
        "short-but-random-Xq9",
        OLD_DEVELOPMENT_KEY,
        "change-me-to-a-long-random-string",
        "please-changeme-0123456789abcdefghijklmnop",
        "ab" * 40,
    ],
)
def test_a_missing_short_default_or_placeholder_key_stops_the_app(config, key):
    from web import create_app

    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(config.with_overrides(secret_key=key, session_cookie_secure=True))


def test_the_env_example_placeholder_is_refused():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        check_secret_key(env_example_value("SECRET_KEY"))


def test_compose_gives_secret_key_no_default():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["x-app-env"]["SECRET_KEY"].startswith("${SECRET_KEY:?")


def test_a_generated_key_is_accepted():
    import secrets

    check_secret_key(secrets.token_urlsafe(48))


def test_gunicorn_without_a_key_exits_naming_the_variable(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SECRET_KEY", "SORTLOOP_ADMIN_TOKEN")
    }
    env.update(SESSION_COOKIE_SECURE="true", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}")
    process = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", "127.0.0.1:0",
         "web:create_app()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert process.returncode != 0
    assert "SECRET_KEY is not set" in process.stderr


def test_a_cookie_signed_with_the_old_development_key_is_not_an_admin(client, session):
    admin = AdminUser(username="root")
    admin.set_password("a-long-password")
    session.add(admin)
    session.commit()
    forger = Flask("forger")
    forger.secret_key = OLD_DEVELOPMENT_KEY
    serializer = SecureCookieSessionInterface().get_signing_serializer(forger)
    forged = serializer.dumps({"_user_id": str(admin.id), "_fresh": True})
    client.set_cookie("session", forged)

    assert client.get("/admin/api/settings").status_code == 401
    refused = client.post("/admin/api/settings", json={"auto_train": True})
    assert refused.status_code == 401
    assert (
        client.get("/admin/api/settings", headers={"Authorization": "Bearer unit-token"}).json[
            "auto_train"
        ]
        is False
    )


def test_make_dev_generates_one_key_per_checkout_and_keeps_it(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from dev import dev_secret_key
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    first = dev_secret_key(tmp_path)
    assert dev_secret_key(tmp_path) == first
    check_secret_key(first)
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    other = tmp_path / "other-checkout"
    other.mkdir()
    assert dev_secret_key(other) != first
