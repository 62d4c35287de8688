"""`make dev` brings the whole system up: web, worker with beat, Flower; Ctrl-C stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from celery import Celery

from shared import task_names
from tests.e2e.conftest import free_port
from tests.integration.conftest import REPO_ROOT, config_environment


@pytest.fixture
def dev_stack(config, tmp_path):
    env = config_environment(config)
    del env["SECRET_KEY"]  # make dev makes one for the checkout
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
            "SORTLOOP_PORT": str(free_port()),
            "FLOWER_PORT": str(free_port()),
            "FLOWER_BASIC_AUTH": "ops:secret",
        }
    )
    log = (tmp_path / "dev.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "scripts/dev.py"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield env, process, tmp_path / "dev.log"
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()


def wait_for(url: str, process, log_path, timeout: float = 120.0, **kwargs) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make dev exited early:\n{log_path.read_text()[-4000:]}")
        try:
            return requests.get(url, timeout=3, **kwargs)
        except requests.RequestException:
            time.sleep(0.5)  # poll: make dev's web process is still starting
    pytest.fail(f"{url} did not answer in {timeout}s:\n{log_path.read_text()[-4000:]}")


def test_dev_stack_serves_web_worker_and_flower_and_stops_on_ctrl_c(dev_stack, config):
    env, process, log_path = dev_stack
    web = f"http://127.0.0.1:{env['SORTLOOP_PORT']}"
    flower = f"http://127.0.0.1:{env['FLOWER_PORT']}/admin/flower/"

    health = wait_for(f"{web}/healthz", process, log_path).json()
    assert health == {**health, "status": "ok", "db": True, "broker": True}

    client = Celery(broker=config.broker_url, backend=config.result_backend)
    result = client.send_task(task_names.PING, args=["dev"], queue=task_names.DEFAULT_QUEUE)
    assert result.get(timeout=60)["payload"] == "dev"

    assert wait_for(flower, process, log_path).status_code == 401
    assert wait_for(flower, process, log_path, auth=("ops", "secret")).status_code == 200
    admin = {"Authorization": f"Bearer {env['SORTLOOP_ADMIN_TOKEN']}"}
    assert wait_for(f"{web}/admin/flower/api/workers", process, log_path, headers=admin).ok
    anonymous = wait_for(f"{web}/admin/flower/metrics", process, log_path, allow_redirects=False)
    assert anonymous.status_code == 302

    # The light default model stays on the request path (SORTLOOP_CLASSIFY_ON=auto).
    deadline = time.monotonic() + 120
    while True:  # polling with a deadline: the measurement follows the model's load
        info = wait_for(f"{web}/admin/api/model-info", process, log_path, headers=admin).json()
        if info["classification"]["measured_ms"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # poll: the start-up measurement runs after the model loads
    assert info["classification"]["on"] == "web", info["classification"]

    log = log_path.read_text()
    assert "admin" in log and "sortloop-admin" in log, "make dev prints how to log in"

    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
    assert process.wait(timeout=60) is not None
    with pytest.raises(requests.RequestException):
        requests.get(f"{web}/healthz", timeout=2)
