"""A real Celery worker sets its compute threads and lowers its CPU priority at start."""

from __future__ import annotations

import os

from shared import compute


def test_the_worker_runs_at_a_lower_priority_with_the_spare_cores(celery_worker_process, config):
    worker = celery_worker_process
    log = worker.log_text()
    plan = compute.plan_for("training", config)  # it takes both queues: the training role
    assert f"compute role=training cores={plan.cores} torch_threads={plan.torch_threads}" in log
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, worker.process.pid) == min(19, mine + plan.nice)
