"""Admin JSON API under /admin/api. Each module adds its routes to this one blueprint."""

from web.api_spec import AdminBlueprint

bp = AdminBlueprint("admin_api", __name__, url_prefix="/admin/api", description="The admin API")

from web.admin_api import (  # noqa: E402,F401
    routes_models,
    routes_notifications,
    routes_shadow,
    routes_submissions,
    routes_training,
)
