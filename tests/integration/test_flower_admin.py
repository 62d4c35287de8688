"""Flower through the admin: a real Flower process (``--url_prefix=admin/flower``, its own
basic auth) behind web's /admin/flower/. Admins see it; anonymous requests to every
Flower path, /metrics and /healthcheck included, are refused before reaching Flower."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from shared.models import AdminUser
from tests.e2e.conftest import free_port
from tests.integration.conftest import REPO_ROOT, config_environment

FLOWER_AUTH = "ops:flower-secret"
FLOWER_PATHS = ["/", "metrics", "healthcheck", "api/workers", "tasks", "static/css/flower.css"]


@pytest.fixture(scope="module")
def flower_url(config, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("flower") / "flower.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "worker.celery_app", "flower",
                f"--port={port}", "--address=127.0.0.1", "--url_prefix=admin/flower",
                f"--basic-auth={FLOWER_AUTH}",
            ],
            cwd=REPO_ROOT,
            env=config_environment(config),
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:  # polling with a deadline: Flower takes a few seconds to listen
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Flower did not start:\n{log_path.read_text()[-3000:]}")
                try:
                    requests.get(f"{url}/admin/flower/healthcheck", timeout=2)
                    break
                except requests.RequestException:
                    time.sleep(0.3)  # poll: Flower is still starting (bounded)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def flower_app(config, engine, flower_url):
    from web import create_app

    app = create_app(config.with_overrides(flower_url=flower_url, flower_basic_auth=FLOWER_AUTH))
    app.config.update(TESTING=True)
    return app


@pytest.fixture
def logged_in(flower_app, session):
    user = AdminUser(username="ops-admin")
    user.set_password("ops-password-123")
    session.add(user)
    session.commit()
    client = flower_app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    login = client.post(
        "/admin/login",
        data={"username": "ops-admin", "password": "ops-password-123", "csrf_token": token},
    )
    assert login.status_code == 302
    return client


def test_flower_itself_serves_metrics_without_its_password(flower_url):
    """Why it must not be reachable: Flower's own /metrics ignores its basic auth."""
    assert requests.get(f"{flower_url}/admin/flower/metrics", timeout=10).status_code == 200
    assert requests.get(f"{flower_url}/admin/flower/", timeout=10).status_code == 401


@pytest.mark.parametrize("path", FLOWER_PATHS)
def test_anonymous_requests_to_any_flower_path_are_refused(flower_app, path):
    client = flower_app.test_client()
    response = client.get(f"/admin/flower/{path.lstrip('/')}")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")
    assert b"celery" not in response.data.lower()


def test_a_wrong_bearer_token_is_refused(flower_app):
    client = flower_app.test_client()
    response = client.get("/admin/flower/metrics", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 302
    assert b"flower_" not in response.data


def test_an_admin_sees_flower_pages_and_metrics(logged_in):
    page = logged_in.get("/admin/flower/")
    assert page.status_code == 200, page.data[:500]
    assert "Flower" in page.get_data(as_text=True)
    assert "/admin/flower/static/" in page.get_data(as_text=True), "links keep the prefix"
    metrics = logged_in.get("/admin/flower/metrics")
    assert metrics.status_code == 200
    assert "flower_" in metrics.get_data(as_text=True)


def test_the_admin_token_reaches_flower_api_without_passing_on(flower_app, admin_headers):
    response = flower_app.test_client().get("/admin/flower/api/workers", headers=admin_headers)
    assert response.status_code == 200
    assert response.is_json


def test_flower_pages_keep_a_content_security_policy(logged_in):
    page = logged_in.get("/admin/flower/")
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert page.headers["X-Frame-Options"] == "DENY"


def test_without_flower_configured_the_path_is_a_404_for_admins(app, admin_headers):
    response = app.test_client().get("/admin/flower/", headers=admin_headers)
    assert response.status_code == 404
    assert "SORTLOOP_FLOWER_URL" in response.get_data(as_text=True)
