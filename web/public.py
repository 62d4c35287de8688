"""Public pages and API: the submission form, submissions, health."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template, request

from shared.classifier.identity import base_model_version
from shared.db import database_is_reachable
from shared.errors import InvalidInput
from shared.submissions.records import (
    MAX_MESSAGE_LENGTH,
    classification_status,
    create_submission,
)
from web import api_requests, api_schemas
from web.analyzer import get_analyzer
from web.api_spec import ApiBlueprint
from web.auth import csrf_exempt
from web.db import get_session
from web.extensions import limiter
from web.tasks_client import broker_is_reachable, enqueue_classification

bp = Blueprint("public", __name__)
# The public JSON API: its operations are in the OpenAPI document.
api_bp = ApiBlueprint("public_api", __name__, description="The public API")


def _public_rate_limit() -> str:
    return current_app.config["SORTLOOP"].public_rate_limit


def _submit(message: object, contributor_type: object):
    """Store the submission; classify it here, or (a model too slow for the request
    path) leave it to a worker and answer at once."""
    session = get_session()
    analyzer = get_analyzer()
    defer = analyzer.classifies_on_worker()
    submission = create_submission(
        session, analyzer, message, contributor_type, current_app.config["SORTLOOP"], defer=defer
    )
    session.commit()
    if defer:
        enqueue_classification()
    return submission


def _render_form(**context):
    return render_template(
        "public/index.html",
        contributor_types=current_app.config["SORTLOOP"].contributor_types,
        max_length=MAX_MESSAGE_LENGTH,
        **context,
    )


@bp.get("/")
def index():
    return _render_form()


@bp.post("/")
@limiter.limit(_public_rate_limit)
def submit_form():
    """The form without JavaScript: a CSRF-protected POST answered with a confirmation."""
    message = request.form.get("message", "")
    contributor_type = request.form.get("contributor_type", "")
    try:
        submission = _submit(message, contributor_type)
    except InvalidInput as error:
        return _render_form(
            error=str(error), message=message, contributor_type=contributor_type
        ), 400
    return _render_form(submitted=submission), 201


@api_bp.post("/api/submissions")
@api_bp.alt_response(
    201,
    schema=api_schemas.SubmissionCreated,
    description="the stored submission and its category",
    success=True,
)
@csrf_exempt
@limiter.limit(_public_rate_limit)
@api_bp.arguments(api_requests.NewSubmission)
def api_create_submission(body: dict):
    submission = _submit(body["message"], body["contributor_type"])
    return jsonify(
        {
            "id": submission.id,
            "category": submission.category,
            "confidence": submission.confidence,
            "model_version": submission.model_version,
            "status": classification_status(submission),
        }
    ), 201


@bp.get("/healthz")
def healthz():
    db_ok = database_is_reachable(current_app.extensions["sortloop_engine"])
    broker_ok = broker_is_reachable()
    analyzer = current_app.extensions.get("sortloop_analyzer")
    if analyzer is not None:
        version = analyzer.current_version()
    else:
        version = base_model_version(current_app.config["SORTLOOP"].base_model)
    status = "ok" if db_ok and broker_ok else "degraded"
    return jsonify({"status": status, "db": db_ok, "broker": broker_ok, "model_version": version})
