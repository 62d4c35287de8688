"""Public pages and API: the submission form, submissions, health."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template

from shared.config import base_model_version
from shared.db import database_is_reachable
from web.tasks_client import broker_is_reachable

bp = Blueprint("public", __name__)


@bp.get("/")
def index():
    return render_template(
        "public/index.html", contributor_types=current_app.config["SORTLOOP"].contributor_types
    )


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
