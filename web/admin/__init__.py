"""Admin pages (HTML). Every view is behind admin_required."""

from flask import Blueprint, redirect, url_for

from web.auth import admin_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@admin_required
def index():
    return redirect(url_for("admin.submissions"))


@bp.get("/submissions")
@admin_required
def submissions():
    from flask import render_template

    return render_template("admin/placeholder.html", title="Submissions")
