"""Admin JSON API under /admin/api. Each module adds its routes to this one blueprint."""

from flask import Blueprint

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")

from web.admin_api import (  # noqa: E402,F401
    routes_models,
    routes_submissions,
    routes_training,
)
