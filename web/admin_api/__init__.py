"""Admin JSON API under /admin/api. Modules add their routes to this one blueprint."""

from flask import Blueprint

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")

from web.admin_api import routes_models  # noqa: E402,F401
