"""Start, watch and cancel fine-tuning runs; the training settings (issue 5)."""

from __future__ import annotations

from flask import current_app, jsonify

from shared.training.estimate import estimate_run_duration
from shared.training.options import training_settings, update_training_settings
from shared.training.run_log import read_run_log
from shared.training.runs import (
    cancel_training_run,
    get_run,
    list_runs,
    pipeline_sender,
    run_status,
    start_training_run,
)
from web import api_requests, api_schemas
from web.admin_api import bp
from web.auth import admin_required, current_actor
from web.db import get_session
from web.tasks_client import celery_client


def _revoke(task_ids: list[str]) -> None:
    celery_client().control.revoke(task_ids)


@bp.post("/start-training")
@bp.alt_response(202, schema=api_schemas.RunStarted, description="the run is queued", success=True)
@admin_required
@bp.arguments(api_requests.TrainingOptions, required=False)
def start_training(options: dict):
    run = start_training_run(
        get_session(),
        options,
        base_model=current_app.config["SORTLOOP"].base_model,
        enqueue=pipeline_sender(celery_client()),
        created_by=current_actor(),
    )
    return jsonify({"run_id": run.id, "status": run.status}), 202


@bp.post("/training-estimate")
@bp.alt_response(
    200, schema=api_schemas.JsonObject, description="the expected duration", success=True
)
@admin_required
@bp.arguments(api_requests.TrainingOptions, required=False)
def training_estimate(options: dict):
    """The expected duration of a run with these options (same body as start-training)."""
    return jsonify(
        estimate_run_duration(
            get_session(),
            options,
            base_model=current_app.config["SORTLOOP"].base_model,
        )
    )


@bp.get("/training-status/<int:run_id>")
@bp.alt_response(200, schema=api_schemas.RunStatus, description="the run's progress", success=True)
@admin_required
def training_status(run_id: int):
    return jsonify(run_status(get_run(get_session(), run_id)))


@bp.post("/cancel-training/<int:run_id>")
@bp.alt_response(200, schema=api_schemas.RunStatus, description="the run, cancelled", success=True)
@admin_required
def cancel_training(run_id: int):
    run = cancel_training_run(get_session(), run_id, revoke=_revoke)
    return jsonify(run_status(run))


@bp.get("/runs")
@bp.alt_response(
    200,
    schema=api_schemas.RunSummary(many=True),
    description="the runs, newest first",
    success=True,
)
@admin_required
def runs():
    return jsonify(list_runs(get_session()))


@bp.get("/runs/<int:run_id>/log")
@bp.alt_response(
    200, schema=api_schemas.RunLog, description="the lines the run's tasks logged", success=True
)
@admin_required
def run_log(run_id: int):
    session = get_session()
    get_run(session, run_id)  # 404 for an unknown run
    return jsonify(
        {"run_id": run_id, "lines": [line.to_dict() for line in read_run_log(session, run_id)]}
    )


@bp.get("/settings")
@bp.alt_response(
    200, schema=api_schemas.JsonObject, description="the training settings", success=True
)
@admin_required
def settings():
    return jsonify(training_settings(get_session()))


@bp.post("/settings")
@bp.alt_response(
    200, schema=api_schemas.JsonObject, description="the saved training settings", success=True
)
@admin_required
@bp.arguments(api_requests.SettingsChange)
def update_settings(changes: dict):
    session = get_session()
    values = update_training_settings(session, changes)
    session.commit()
    return jsonify(values)
