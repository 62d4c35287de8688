"""Submissions, categories and training-data pages (issue 3).

Forms post back here with a CSRF token and redirect (post/redirect/get); domain errors
become a flashed message. admin.js only enhances: the pages work without JavaScript.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from shared.errors import InvalidInput, NotFound, SortloopError
from shared.inputs import MAX_ID, check_storable, parse_whole_number
from shared.models import TrainingExample
from shared.search import MAX_QUERY_LENGTH, highlighted
from shared.submissions.categories import add_category, edit_category, list_categories
from shared.submissions.classification_queue import queue_state
from shared.submissions.records import (
    bulk_update_category,
    ids_matching,
    list_submissions,
    parse_page,
    parse_similar_ids,
    update_categories,
    update_category,
)
from shared.training.examples import (
    delete_training_example,
    delete_training_examples,
    list_training_examples,
    parse_ids,
    parse_is_correction,
    relabel_training_examples,
    training_stats,
)
from shared.training.runs import get_run
from web.admin import bp
from web.auth import admin_required, current_actor
from web.db import get_session


def _back_to(default_endpoint: str, prefix: str) -> str:
    """The page to return to: a same-site admin path from the form, else the default."""
    target = request.form.get("next", "")
    if target.startswith(prefix) and not target.startswith("//"):
        return target
    return url_for(default_endpoint)


def _form_ids(name: str) -> list[int]:
    """Whole-number ids posted under ``name`` (checkboxes); InvalidInput for anything else."""
    values = request.form.getlist(name)
    try:
        return [parse_whole_number(value, name, 1, MAX_ID) for value in values]
    except InvalidInput:
        raise InvalidInput(f"{name} must be whole-number ids") from None


def _flag(name: str, source: dict | None = None) -> bool:
    value = (request.args if source is None else source).get(name, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


PAGE_SIZES = (25, 50, 100, 200)


@bp.app_template_filter("highlighted")
def highlighted_filter(text: str, query: str | None) -> list[tuple[str, bool]]:
    """``{% for part, hit in message|highlighted(q) %}``: matches go in <mark>."""
    return highlighted(text, query)


def search_words(source: dict | None = None) -> str:
    """The ``q`` of a page's query string (or form): storable, bounded, stripped."""
    words = ((request.args if source is None else source).get("q") or "").strip()
    if len(words) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"q must be at most {MAX_QUERY_LENGTH} characters")
    check_storable(words, "q")
    return words


def submission_filters(source: dict | None = None) -> dict:
    """The submissions list's filters from its query string (the review page shares them)."""
    args = request.args if source is None else source
    return {
        "category": args.get("category") or "",
        "unreviewed": _flag("unreviewed", args),
        "order": args.get("order") or "newest",
        # The review queue (not yet reviewed only) folds near duplicates unless told not to.
        "similar": "show" if args.get("similar") == "show" else "fold",
        "q": search_words(args),
    }


@bp.get("/submissions")
@admin_required
def submissions():
    session = get_session()
    page, per_page = parse_page(request.args.get("page"), request.args.get("per_page"))
    filters = submission_filters()
    filters["per_page"] = per_page
    result = list_submissions(
        session,
        page=page,
        per_page=per_page,
        category=filters["category"] or None,
        unreviewed=filters["unreviewed"],
        order=filters["order"],
        fold_similar=filters["unreviewed"] and filters["similar"] == "fold",
        q=filters["q"] or None,
        ids=parse_ids(request.args.get("ids")),
    )
    return render_template(
        "admin/submissions.html",
        result=result,
        filters=filters,
        page_sizes=PAGE_SIZES,
        categories=list_categories(session),
        active_categories=[c.name for c in list_categories(session, active_only=True)],
        waiting=queue_state(session),
    )


@bp.post("/submissions/bulk-category")
@admin_required
def bulk_category():
    """The list's bulk form: the ticked rows, or every submission matching the filter."""
    session = get_session()
    category = request.form.get("category")
    try:
        if request.form.get("all_matching") == "1":
            ids = ids_matching(
                session,
                category=request.form.get("filter_category") or None,
                unreviewed=_flag("filter_unreviewed", request.form),
                q=search_words({"q": request.form.get("filter_q", "")}) or None,
            )
        else:
            ids = _form_ids("ids")
        if not ids:
            raise InvalidInput("Tick the submissions to set, or choose all matching this filter.")
        examples = bulk_update_category(session, ids, category, actor=current_actor())
    except SortloopError as error:
        session.rollback()
        flash(str(error), "error")
    else:
        session.commit()
        corrections = sum(1 for example in examples if example.is_correction)
        flash(
            f"{_count(len(examples), 'submission')} set to '{examples[0].corrected_category}' "
            f"(saved for training: {_count(corrections, 'correction')}, "
            f"{_count(len(examples) - corrections, 'confirmation')}).",
            "info",
        )
    return redirect(_back_to("admin.submissions", "/admin/submissions"))


@bp.post("/submissions/<int:submission_id>/category")
@admin_required
def set_submission_category(submission_id: int):
    session = get_session()
    category = request.form.get("category")
    try:
        similar_ids = parse_similar_ids(_form_ids("similar_ids"), submission_id)
        example = update_category(session, submission_id, category, actor=current_actor())
        also = update_categories(session, similar_ids, category, actor=current_actor())
    except SortloopError as error:
        session.rollback()
        flash(str(error), "error")
    else:
        session.commit()
        flash(_saved_message(submission_id, [example, *also]), "info")
    return redirect(_back_to("admin.submissions", "/admin/submissions"))


def _saved_message(submission_id: int, examples: list[TrainingExample]) -> str:
    category = examples[0].corrected_category
    if len(examples) == 1:
        kind = "correction" if examples[0].is_correction else "confirmation"
        return f"Submission #{submission_id} is now '{category}' (saved as a {kind} for training)."
    corrections = sum(1 for example in examples if example.is_correction)
    return (
        f"Submission #{submission_id} and {_count(len(examples) - 1, 'similar submission')} "
        f"are now '{category}' (saved for training: {_count(corrections, 'correction')}, "
        f"{_count(len(examples) - corrections, 'confirmation')})."
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


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
        "q": search_words(),
        "per_page": per_page,
        "run": request.args.get("run") or "",
    }
    doubts = _doubted_labels(session, filters["run"])
    result = list_training_examples(
        session,
        page=page,
        per_page=per_page,
        category=filters["category"] or None,
        is_correction=parse_is_correction(filters["is_correction"]),
        ids=parse_ids(filters["ids"]),
        q=filters["q"] or None,
    )
    return render_template(
        "admin/training_data.html",
        result=result,
        filters=filters,
        page_sizes=PAGE_SIZES,
        stats=training_stats(session),
        doubts=doubts,
        categories=list_categories(session),
        active_categories=[c.name for c in list_categories(session, active_only=True)],
    )


@bp.post("/training-data/bulk")
@admin_required
def bulk_training_data():
    """Delete or relabel the ticked examples (or the ids a quality-report button names)."""
    session = get_session()
    action = request.form.get("action")
    try:
        ids = _form_ids("ids")
        if not ids:
            raise InvalidInput("Tick the training examples first.")
        if action == "delete":
            deleted = delete_training_examples(session, ids)
            message = f"{_count(deleted, 'training example')} deleted."
        elif action == "relabel":
            examples = relabel_training_examples(session, ids, request.form.get("category"))
            message = (
                f"{_count(len(examples), 'training example')} now "
                f"'{examples[0].corrected_category}'."
            )
        else:
            raise InvalidInput("action must be delete or relabel")
    except SortloopError as error:
        session.rollback()
        flash(str(error), "error")
    else:
        session.commit()
        flash(message, "info")
    return redirect(_back_to("admin.training_data", "/admin/training-data"))


def _doubted_labels(session, run: str) -> dict[int, dict] | None:
    """With ``run`` (a run's id from its "Labels to check"), that run's doubted labels by
    training example id: each with the label it trained on and its suggestion. None
    without; a run that is not there is a 404, a run with none an empty dict."""
    if not run:
        return None
    found = get_run(session, parse_whole_number(run, "run", 1, MAX_ID))
    issues = ((found.results or {}).get("training") or {}).get("label_issues") or []
    return {issue["id"]: issue for issue in issues if isinstance(issue.get("id"), int)}


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
