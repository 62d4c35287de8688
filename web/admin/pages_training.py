"""Training dashboard, run details and settings pages (issue 5)."""

from flask import render_template

from web.admin import bp
from web.auth import admin_required


@bp.get("/training")
@admin_required
def training():
    return render_template("admin/placeholder.html", title="Training")


@bp.get("/settings")
@admin_required
def settings():
    return render_template("admin/placeholder.html", title="Settings")
