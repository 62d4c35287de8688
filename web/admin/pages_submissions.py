"""Submissions, categories and training-data pages (issue 3).

Forms post back here with a CSRF token and redirect (post/redirect/get); domain errors
become a flashed message. admin.js only enhances: the pages work without JavaScript.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from shared.categories import add_category, edit_category, list_categories
from shared.errors import NotFound, SortloopError
from shared.models import TrainingExample
from shared.submissions import list_submissions, parse_page, update_category
from shared.training_data import (
    delete_training_example,
    list_training_examples,
    parse_ids,
    parse_is_correction,
    training_stats,
)
from web.admin import bp
from web.auth import admin_required, current_actor
from web.db import get_session


def _back_to(default_endpoint: str, prefix: str) -> str:
    """The page to return to: a same-site admin path from the form, else the default."""
    target = request.form.get("next", "")
    if target.startswith(prefix) and not target.startswith("//"):
        return target
    return url_for(default_endpoint)


def _flag(name: str) -> bool:
    return request.args.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@bp.get("/submissions")
@admin_required
def submissions():
    session = get_session()
    page, per_page = parse_page(request.args.get("page"), request.args.get("per_page"))
    filters = {
        "category": request.args.get("category") or "",
        "unreviewed": _flag("unreviewed"),
        "order": request.args.get("order") or "newest",
    }
    result = list_submissions(
        session,
        page=page,
        per_page=per_page,
        category=filters["category"] or None,
        unreviewed=filters["unreviewed"],
        order=filters["order"],
    )
    return render_template(
        "admin/submissions.html",
        result=result,
        filters=filters,
        categories=list_categories(session),
        active_categories=[c.name for c in list_categories(session, active_only=True)],
    )


@bp.post("/submissions/<int:submission_id>/category")
@admin_required
def set_submission_category(submission_id: int):
    session = get_session()
    try:
        example = update_category(
            session, submission_id, request.form.get("category"), actor=current_actor()
        )
    except SortloopError as error:
        session.rollback()
        flash(str(error), "error")
    else:
        session.commit()
        kind = "correction" if example.is_correction else "confirmation"
        flash(
            f"Submission #{submission_id} is now '{example.corrected_category}' "
            f"(saved as a {kind} for training).",
            "info",
        )
    return redirect(_back_to("admin.submissions", "/admin/submissions"))


@bp.get("/categories")
@admin_required
def categories():
    return render_template("admin/categories.html", categories=list_categories(get_session()))


@bp.post("/categories")
@admin_required
def create_category():
    session = get_session()
    try:
        category = add_category(session, request.form.get("name"), request.form.get("description"))
    except SortloopError as error:
        session.rollback()
        flash(str(error), "error")
    else:
        session.commit()
        flash(f"Category '{category.name}' added.", "info")
    return redirect(url_for("admin.categories"))


@bp.post("/categories/<int:category_id>")
@admin_required
def change_category(category_id: int):
    session = get_session()
    try:
        category = edit_category(
            session,
            category_id,
            description=request.form.get("description"),
            active=request.form.get("active") == "1",
        )
    except SortloopError as error:
        session.rollback()
        flash(str(error), "error")
    else:
        session.commit()
        flash(f"Category '{category.name}' saved.", "info")
    return redirect(url_for("admin.categories"))


@bp.get("/training-data")
@admin_required
def training_data():
    session = get_session()
    page, per_page = parse_page(request.args.get("page"), request.args.get("per_page"), 50)
    filters = {
        "category": request.args.get("category") or "",
        "is_correction": request.args.get("is_correction") or "",
        "ids": request.args.get("ids") or "",
    }
    result = list_training_examples(
        session,
        page=page,
        per_page=per_page,
        category=filters["category"] or None,
        is_correction=parse_is_correction(filters["is_correction"]),
        ids=parse_ids(filters["ids"]),
    )
    return render_template(
        "admin/training_data.html",
        result=result,
        filters=filters,
        stats=training_stats(session),
        categories=list_categories(session),
    )


def _example_or_404(example_id: int) -> TrainingExample:
    example = get_session().get(TrainingExample, example_id)
    if example is None:
        raise NotFound(f"training example {example_id} does not exist")
    return example


@bp.get("/training-data/<int:example_id>/delete")
@admin_required
def confirm_delete_example(example_id: int):
    return render_template("admin/confirm_delete_example.html", example=_example_or_404(example_id))


@bp.post("/training-data/<int:example_id>/delete")
@admin_required
def delete_example(example_id: int):
    session = get_session()
    delete_training_example(session, example_id)
    session.commit()
    flash(f"Training example #{example_id} deleted.", "info")
    return redirect(url_for("admin.training_data"))
