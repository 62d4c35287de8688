"""Submissions, categories and training-data pages (issue 3)."""

from flask import render_template

from web.admin import bp
from web.auth import admin_required


@bp.get("/submissions")
@admin_required
def submissions():
    return render_template("admin/placeholder.html", title="Submissions")


@bp.get("/training-data")
@admin_required
def training_data():
    return render_template("admin/placeholder.html", title="Training data")


@bp.get("/categories")
@admin_required
def categories():
    return render_template("admin/placeholder.html", title="Categories")
