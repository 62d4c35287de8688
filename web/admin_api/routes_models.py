"""Which model is active; deploy, rollback, history, export, import, compare, re-classify."""

from __future__ import annotations

from flask import Response, current_app, jsonify, stream_with_context, url_for

from shared import task_names
from shared.deployment.audit import deployment_history, event_to_dict
from shared.deployment.comparison import compare_models, prepare_comparison
from shared.deployment.registry import (
    deploy_model,
    describe_deployed_model,
    list_published_models,
    rollback_to_baseline,
)
from shared.deployment.shadow import shadow_report
from shared.errors import ServiceUnavailable
from shared.model_store.archive import import_archive
from shared.model_store.export import exportable_run_directory, iter_export_zip
from shared.submissions.reclassification import latest_reclassification
from web import api_requests, api_schemas
from web.admin_api import bp
from web.analyzer import get_analyzer
from web.auth import admin_required, current_actor
from web.db import get_session
from web.tasks_client import broker_is_reachable, celery_client

RECLASSIFY_MODES = {"preview": True, "apply": False}


@bp.get("/model-info")
@bp.alt_response(200, schema=api_schemas.ModelInfo, description="the active model", success=True)
@admin_required
def model_info():
    return jsonify(get_analyzer().get_model_info())


def _config():
    return current_app.config["SORTLOOP"]


def _enqueue(name: str, kwargs: dict) -> str:
    """Send a task to its queue (``task_names.queue_of``) by name; 503 when the queue is
    not reachable."""
    if not broker_is_reachable():  # fail fast: the result backend's reconnects take long
        raise ServiceUnavailable("the task queue is not reachable; try again later")
    try:
        result = celery_client().send_task(name, kwargs=kwargs, queue=task_names.queue_of(name))
    except Exception as error:  # kombu, redis-py and Celery's result consumer each raise their own
        raise ServiceUnavailable(f"the task queue is not reachable: {error}") from None
    return result.id


def _enqueue_reclassify(dry_run: bool) -> str:
    return _enqueue(task_names.RECLASSIFY, {"dry_run": dry_run, "actor": current_actor()})


def _task_state(task_id: str) -> tuple[str, object]:
    """A task's state and its result or error, from the result backend (the id's form is
    checked by ``api_requests.TaskPath``)."""
    result = celery_client().AsyncResult(task_id)
    try:
        return result.state, result.info
    except Exception as error:  # any backend failure (redis-py has its own errors) is a 503
        raise ServiceUnavailable(f"the result backend is not reachable: {error}") from None


@bp.post("/deploy-model/<int:run_id>")
@bp.alt_response(
    200, schema=api_schemas.ActiveModel, description="the run's model is active", success=True
)
@admin_required
@bp.arguments(api_requests.Deployment, required=False)
def deploy(body: dict, run_id: int):
    force, reclassify = body["force"], body["reclassify"]
    result = deploy_model(get_session(), _config(), run_id, current_actor(), force=force)
    answer = result.to_dict()
    if reclassify is not None:
        try:
            answer["reclassify_task_id"] = _enqueue_reclassify(RECLASSIFY_MODES[reclassify])
        except ServiceUnavailable as error:  # the deploy itself stands
            answer["reclassify_error"] = str(error)
    return jsonify(answer)


@bp.post("/rollback-model")
@bp.alt_response(
    200, schema=api_schemas.ActiveModel, description="the base model is active", success=True
)
@admin_required
def rollback():
    return jsonify(rollback_to_baseline(get_session(), _config(), current_actor()).to_dict())


@bp.get("/deployments")
@bp.alt_response(
    200,
    schema=api_schemas.JsonObject,
    description="the active model, published models and deployment history",
    success=True,
)
@admin_required
def deployments():
    session = get_session()
    return jsonify(
        {
            "active": active_model_summary(session),
            "models": list_published_models(session, _config()),
            "events": [event_to_dict(event) for event in deployment_history(session)],
            "reclassification": latest_reclassification(session),
            "shadow": shadow_report(session),
        }
    )


def active_model_summary(session) -> dict:
    """The deployed model (the database's word, as soon as a deploy commits) and, under
    ``serving``, what this web process serves now: it swaps within the check interval
    plus the load, so the two differ for a few seconds after a deploy."""
    info = get_analyzer().get_model_info()
    active = describe_deployed_model(session, _config())
    active["serving"] = {
        "version": info["version"],
        "loaded": info["loaded"],
        "load_error": info["load_error"],
    }
    return active


@bp.get("/export-model/<int:run_id>")
@bp.alt_response(
    200,
    content_type="application/zip",
    description="the run's model as a ZIP archive",
    success=True,
)
@admin_required
def export_model(run_id: int):
    directory = exportable_run_directory(get_session(), _config().models_dir, run_id)
    return Response(
        stream_with_context(iter_export_zip(directory)),
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="sortloop-run-{run_id}.zip"'},
    )


@bp.post("/import-model")
@bp.alt_response(201, schema=api_schemas.Imported, description="the imported run", success=True)
@admin_required
@bp.arguments(api_requests.ModelArchive, location="files")
def import_model(files: dict):
    upload = files["archive"]
    run = import_archive(
        get_session(), _config(), upload.stream, actor=current_actor(), filename=upload.filename
    )
    return jsonify({"run_id": run.id, "status": run.status, "version": run.version}), 201


@bp.get("/compare-models")
@bp.alt_response(
    200, schema=api_schemas.JsonObject, description="both models on the same test set", success=True
)
@admin_required
@bp.arguments(api_requests.ModelComparison, location="query")
def compare(query: dict):
    return jsonify(compare_models(get_session(), _config(), query["a"], query["b"]))


@bp.post("/compare-models")
@bp.alt_response(
    202,
    schema=api_schemas.ComparisonQueued,
    description="the comparison is queued on the worker; poll status_url for the result",
    success=True,
)
@admin_required
@bp.arguments(api_requests.ModelComparisonTask)
def compare_on_worker(body: dict):
    # The cheap checks (ids, runs, a shared test set) answer 400/404 here; the worker
    # loads both models and scores them.
    prepared = prepare_comparison(get_session(), _config(), body["a"], body["b"])
    task_id = _enqueue(task_names.COMPARE_MODELS, {"a": prepared.a, "b": prepared.b})
    status_url = url_for("admin_api.compare_status", task_id=task_id)
    answer = {"task_id": task_id, "a": prepared.a, "b": prepared.b, "status_url": status_url}
    return jsonify(answer), 202, {"Location": status_url}


@bp.get("/compare-models/<task_id>")
@bp.alt_response(
    200,
    schema=api_schemas.ComparisonState,
    description="the comparison's state; its result once the state is SUCCESS",
    success=True,
)
@admin_required
@bp.arguments(api_requests.TaskPath, location="path")
def compare_status(path: dict, task_id: str):
    state, info = _task_state(task_id)
    answer: dict = {"task_id": task_id, "state": state, "result": None, "error": None}
    if state == "SUCCESS" and isinstance(info, dict):
        answer["result"] = info
    elif state == "FAILURE":
        answer["error"] = str(info)
    return jsonify(answer)


@bp.post("/reclassify")
@bp.alt_response(
    202,
    schema=api_schemas.TaskQueued,
    description="the re-classification task is queued",
    success=True,
)
@admin_required
@bp.arguments(api_requests.Reclassification, required=False)
def reclassify(body: dict):
    dry_run = body["dry_run"]
    return jsonify({"task_id": _enqueue_reclassify(dry_run), "dry_run": dry_run}), 202


@bp.get("/reclassify/<task_id>")
@bp.alt_response(200, schema=api_schemas.TaskState, description="the task's state", success=True)
@admin_required
@bp.arguments(api_requests.TaskPath, location="path")
def reclassify_status(path: dict, task_id: str):
    state, info = _task_state(task_id)
    answer: dict = {"task_id": task_id, "state": state, "progress": None, "summary": None}
    if state == "PROGRESS" and isinstance(info, dict):
        answer["progress"] = {"done": info.get("done"), "total": info.get("total")}
    elif state == "SUCCESS" and isinstance(info, dict):
        answer["summary"] = info
    elif state == "FAILURE":
        answer["error"] = str(info)
    return jsonify(answer)
