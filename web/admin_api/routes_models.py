"""Which model is active."""

from flask import jsonify

from web.admin_api import bp
from web.analyzer import get_analyzer
from web.auth import admin_required


@bp.get("/model-info")
@admin_required
def model_info():
    return jsonify(get_analyzer().get_model_info())
