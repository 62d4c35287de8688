"""Shadow evaluation: put a run in shadow beside the model in use, stop it, its report.

Promoting the shadow is a normal deploy (``POST /admin/api/deploy-model/<run_id>``):
the same gate and audit trail, and the shadow ends with it."""

from __future__ import annotations

from flask import current_app, jsonify

from shared.deployment.shadow import shadow_report, start_shadow, stop_shadow
from shared.errors import NotFound
from web import api_schemas
from web.admin_api import bp
from web.auth import admin_required, current_actor
from web.db import get_session


@bp.post("/shadow-model/<int:run_id>")
@bp.alt_response(
    201,
    schema=api_schemas.ShadowReport,
    description="the run is in shadow; every web process loads it within seconds",
    success=True,
)
@admin_required
def put_in_shadow(run_id: int):
    session = get_session()
    shadow = start_shadow(session, current_app.config["SORTLOOP"], run_id, current_actor())
    return jsonify(shadow_report(session, shadow)), 201


@bp.delete("/shadow-model")
@bp.alt_response(
    200,
    schema=api_schemas.ShadowReport,
    description="the shadow ended; its final figures",
    success=True,
)
@admin_required
def end_shadow():
    session = get_session()
    shadow = stop_shadow(session, current_actor())
    return jsonify({**shadow_report(session, shadow), "ended_at": shadow.ended_at.isoformat()})


@bp.get("/shadow-report")
@bp.alt_response(
    200, schema=api_schemas.ShadowReport, description="the running shadow's figures", success=True
)
@admin_required
def report():
    figures = shadow_report(get_session())
    if figures is None:
        raise NotFound("no model is in shadow")
    return jsonify(figures)
