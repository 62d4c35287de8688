"""Which model is active."""

from flask import current_app, jsonify

from shared.config import base_model_label, base_model_version
from web.admin_api import bp
from web.auth import admin_required


@bp.get("/model-info")
@admin_required
def model_info():
    config = current_app.config["SORTLOOP"]
    return jsonify(
        {
            "kind": "base",
            "version": base_model_version(config.base_model),
            "base_model": base_model_label(config.base_model),
            "run_id": None,
            "metrics": None,
        }
    )
