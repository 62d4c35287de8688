"""Compute threads and CPU priority per process role (issue 21: 20 clients on 2 cores
got 14 submissions/s with every process at one thread per core, 124 with one each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import compute
from shared.config import Config, ConfigError
from worker.celery_app import compute_role_for

REPO = Path(__file__).resolve().parents[2]


def test_small_hosts_give_each_web_process_one_thread_and_a_worker_per_core():
    config = Config.from_env({})
    assert compute.plan_for("web", config, cores=2).torch_threads == 1
    assert compute.plan_for("web", config, cores=4).torch_threads == 1
    assert compute.plan_for("web", config, cores=16).torch_threads == 2
    assert compute.web_workers(config, cores=1) == 2
    assert compute.web_workers(config, cores=2) == 2
    assert compute.web_workers(config, cores=8) == 8


def test_the_training_worker_leaves_cores_to_the_web_tier_at_a_lower_priority():
    config = Config.from_env({})
    on_two = compute.plan_for("training", config, cores=2)
    assert (on_two.torch_threads, on_two.nice) == (1, 10)
    assert compute.plan_for("training", config, cores=8).torch_threads == 7
    assert compute.plan_for("training", config, cores=16).torch_threads == 14
    # The CPU worker shares the cores among its children, below the web tier's priority.
    assert compute.plan_for("cpu", config, cores=16).torch_threads == 1  # Celery: 16 children
    assert compute.plan_for("cpu", config, cores=16, concurrency=2).torch_threads == 8
    on_two = compute.plan_for("cpu", config, cores=2, concurrency=1)
    assert (on_two.torch_threads, on_two.nice) == (2, 10)
    assert compute.plan_for("cpu", config, cores=2, concurrency=4).torch_threads == 1


def test_every_setting_comes_from_the_environment():
    config = Config.from_env(
        {
            "SORTLOOP_WEB_WORKERS": "5",
            "SORTLOOP_WEB_TORCH_THREADS": "3",
            "SORTLOOP_TRAINING_THREADS": "6",
            "SORTLOOP_CPU_WORKER_THREADS": "2",
            "SORTLOOP_TRAINING_NICE": "0",
        }
    )
    assert compute.web_workers(config, cores=2) == 5
    assert compute.plan_for("web", config, cores=2).torch_threads == 3
    assert compute.plan_for("training", config, cores=2) == compute.ComputePlan("training", 2, 6, 0)
    assert compute.plan_for("cpu", config, cores=2).torch_threads == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SORTLOOP_TRAINING_NICE", "20"),
        ("SORTLOOP_WEB_THREADS", "0"),
        ("SORTLOOP_WEB_WORKERS", "x"),
    ],
)
def test_a_bad_setting_stops_the_process_naming_it(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Config.from_env({variable: value})


def test_workers_take_their_role_from_their_queues():
    assert compute_role_for("training") == "training"
    assert compute_role_for("training,default") == "training"
    assert compute_role_for(None) == "training"  # no -Q: every queue
    assert compute_role_for(["default"]) == "cpu"


def run_python(code: str, **env: str) -> dict:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_applying_a_plan_sets_the_threads_and_lowers_the_priority_once():
    seen = run_python(
        "import json, os, torch\n"
        "from shared import compute\n"
        "before = os.nice(0)\n"
        "plan = compute.apply(compute.ComputePlan('training', 2, 1, 5))\n"
        "compute.apply(plan, lower_priority=False)  # a forked child's call\n"
        "print(json.dumps({'threads': torch.get_num_threads(), 'nice': os.nice(0) - before}))\n"
    )
    assert seen == {"threads": 1, "nice": 5}


def test_a_serving_web_process_sets_its_threads_and_watches_the_model(tmp_path):
    seen = run_python(
        "import json, torch\n"
        "from web import create_app\n"
        "app = create_app()\n"
        "info = app.extensions['sortloop_analyzer'].get_model_info()\n"
        "print(json.dumps({'threads': torch.get_num_threads(),"
        " 'watching': info['process']['watching']}))\n",
        DATABASE_URL=f"sqlite:///{tmp_path / 'web.db'}",
        SORTLOOP_WEB_TORCH_THREADS="1",
        SECRET_KEY="compute-test-secret-5c2a9e1f7b3d4806",
        MODELS_DIR=str(tmp_path / "models"),
    )
    assert seen == {"threads": 1, "watching": True}


def test_gunicorn_takes_processes_and_threads_from_the_config():
    seen = run_python(
        "import json\n"
        "from web import gunicorn_conf as c\n"
        "print(json.dumps({'workers': c.workers, 'threads': c.threads,"
        " 'worker_class': c.worker_class, 'preload': c.preload_app}))\n",
        SORTLOOP_WEB_WORKERS="3",
        SORTLOOP_WEB_THREADS="6",
    )
    assert seen == {"workers": 3, "threads": 6, "worker_class": "gthread", "preload": False}
