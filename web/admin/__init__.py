"""Admin pages (HTML). Every view is behind admin_required; modules add routes to `bp`."""

from flask import Blueprint, redirect, url_for

from web.auth import admin_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@admin_required
def index():
    return redirect(url_for("admin.submissions"))


from web.admin import (  # noqa: E402,F401
    formatting,
    pages_models,
    pages_notifications,
    pages_review,
    pages_submissions,
    pages_training,
)
