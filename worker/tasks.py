"""Celery tasks: thin wrappers that take ids, change state and call the core.

Every pipeline task takes the run id as its only argument (visible in Flower) and goes
through ``worker.pipeline.run_step``, the one run lifecycle.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import shared_task

from shared import task_names
from shared.db import session_scope
from shared.deployment.registry import maybe_auto_deploy
from shared.training.periodic import maybe_auto_train, reap_stale_runs
from shared.training.runs import pipeline_sender
from worker import pipeline, state

logger = logging.getLogger(__name__)


@shared_task(name=task_names.PING)
def ping(payload: str = "pong") -> dict[str, str | int]:
    """Round-trip check: proves a worker consumes the queue and the result backend works."""
    logger.info("task=ping payload=%s", payload)
    return {"payload": payload, "hostname": socket.gethostname(), "pid": os.getpid()}


def _run_pipeline_step(task: Any, run_id: int, step: pipeline.Step) -> dict[str, Any]:
    config = state.config()
    result = pipeline.run_step(
        state.session_factory(),
        int(run_id),
        step,
        models_dir=config.models_dir,
        heartbeat_timeout_seconds=config.heartbeat_timeout_seconds,
        task_id=task.request.id,
        training_overrides=config.training_overrides(),
        configured_model=(config.base_model, config.base_model_kind),
        outage_patience_seconds=config.outage_patience_seconds,
    )
    if result["outcome"] == "failed":
        # The run is already failed with its error; failing the task stops the chain and
        # shows the failure in Flower.
        raise pipeline.StepFailed(f"run {run_id}: {result['error']}")
    return result


@shared_task(name=task_names.VALIDATE_DATA, bind=True)
def validate_data(self, run_id: int) -> dict[str, Any]:
    """Check the run's examples and split them (run status ``preparing``)."""
    return _run_pipeline_step(self, run_id, pipeline.VALIDATE)


@shared_task(name=task_names.TRAIN, bind=True)
def train(self, run_id: int) -> dict[str, Any]:
    """Fine-tune on the train split with live progress (run status ``training``)."""
    return _run_pipeline_step(self, run_id, pipeline.TRAIN)


@shared_task(name=task_names.EVALUATE, bind=True)
def evaluate(self, run_id: int) -> dict[str, Any]:
    """Score against the base model, publish the adapter, complete (``evaluating``);
    then put it in use if ``auto_deploy`` is on and it meets the deploy criteria."""
    result = _run_pipeline_step(self, run_id, pipeline.EVALUATE)
    if result["outcome"] == "completed":
        try:
            with session_scope(state.session_factory()) as session:
                deployed = maybe_auto_deploy(session, state.config(), int(run_id))
            result["auto_deployed"] = deployed is not None
        except Exception:  # the run stays completed; an admin can still deploy it
            logger.exception("run=%s auto-deploy failed", run_id)
    return result


@shared_task(name=task_names.REAP_STALE_RUNS)
def reap_stale_runs_task() -> list[int]:
    """Fail runs whose worker stopped sending heartbeats (beat runs this)."""
    with session_scope(state.session_factory()) as session:
        return reap_stale_runs(session, state.config().heartbeat_timeout_seconds)


@shared_task(name=task_names.AUTO_TRAIN, bind=True)
def auto_train(self) -> int | None:
    """Start a run when auto_train is on and enough new examples arrived (beat runs this)."""
    with session_scope(state.session_factory()) as session:
        return maybe_auto_train(
            session, base_model=state.config().base_model, enqueue=pipeline_sender(self.app)
        )
