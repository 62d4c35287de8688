"""Submissions, categories, training examples and stats (issue 3)."""

from __future__ import annotations

from flask import jsonify
from sqlalchemy import select

from shared.models import Submission
from shared.search import match_spans
from shared.submissions.categories import (
    add_category,
    category_to_dict,
    edit_category,
    list_categories,
)
from shared.submissions.classification_queue import queue_state
from shared.submissions.records import (
    bulk_update_category,
    clear_categories,
    ids_matching,
    list_submissions,
    parse_similar_ids,
    submission_to_dict,
    update_categories,
    update_category,
)
from shared.training.examples import (
    delete_training_example,
    delete_training_examples,
    example_to_dict,
    list_training_examples,
    relabel_training_examples,
    training_stats,
)
from web import api_requests, api_schemas
from web.admin_api import bp
from web.auth import admin_required, current_actor
from web.db import get_session


@bp.get("/submissions")
@bp.alt_response(200, schema=api_schemas.Page, description="one page of submissions", success=True)
@admin_required
@bp.arguments(api_requests.SubmissionsQuery, location="query")
def submissions(query: dict):
    fold = query["fold_similar"]
    result = list_submissions(
        get_session(),
        page=query["page"],
        per_page=query["per_page"],
        category=query["category"] or None,
        unreviewed=query["unreviewed"],
        order=query["order"] or "newest",
        fold_similar=fold,
        q=query["q"],
        ids=query["ids"],
    )
    items = [_with_matches(submission_to_dict(item), query["q"]) for item in result.items]
    body = {"items": items, "total": result.total, "page": result.page, "per_page": result.per_page}
    if fold:
        for item in items:
            item["similar"] = [
                _with_matches(submission_to_dict(s), query["q"])
                for s in result.similar.get(item["id"], [])
            ]
        body["folded"] = result.folded
    return jsonify(body)


def _with_matches(item: dict, q: str | None) -> dict:
    """With a search, ``matches``: the [start, end) character spans of ``message`` to highlight."""
    if q:
        item["matches"] = match_spans(item["message"], q)
    return item


@bp.post("/submissions/bulk-category")
@bp.alt_response(
    200,
    schema=api_schemas.BulkSaved,
    description="how many were saved, and each one's training example",
    success=True,
)
@admin_required
@bp.arguments(api_requests.BulkCategory)
def bulk_category(body: dict):
    session = get_session()
    if body["ids"] is not None:
        ids = body["ids"]
    else:
        chosen = body["filter"]
        ids = ids_matching(
            session,
            category=chosen["category"] or None,
            unreviewed=chosen["unreviewed"],
            q=chosen["q"],
        )
    examples = bulk_update_category(session, ids, body["category"], actor=current_actor())
    session.commit()
    return jsonify(
        {
            "saved": len(examples),
            "category": examples[0].corrected_category if examples else body["category"],
            "items": [
                {
                    "id": example.submission_id,
                    "training_example_id": example.id,
                    "is_correction": example.is_correction,
                }
                for example in examples
            ],
        }
    )


@bp.post("/submissions/clear-category")
@bp.alt_response(
    200,
    schema=api_schemas.Cleared,
    description="the decisions were undone; cleared counts the training examples deleted",
    success=True,
)
@admin_required
@bp.arguments(api_requests.ClearDecisions)
def clear_category(body: dict):
    session = get_session()
    cleared = clear_categories(session, body["ids"], actor=current_actor())
    session.commit()
    return jsonify({"cleared": cleared})


@bp.get("/classification-queue")
@bp.alt_response(
    200,
    schema=api_schemas.ClassificationQueue,
    description="submissions waiting for a worker to classify them, and the asked ones' state",
    success=True,
)
@admin_required
@bp.arguments(api_requests.ClassificationQueueQuery, location="query")
def classification_queue(query: dict):
    session = get_session()
    items = []
    if query["ids"]:
        found = session.scalars(select(Submission).where(Submission.id.in_(query["ids"])))
        items = [submission_to_dict(submission) for submission in found]
    return jsonify({**queue_state(session), "items": items})


@bp.post("/submissions/<int:submission_id>/category")
@bp.alt_response(
    200,
    schema=api_schemas.CategorySaved,
    description="the category and its training example",
    success=True,
)
@admin_required
@bp.arguments(api_requests.CategoryDecision)
def set_submission_category(body: dict, submission_id: int):
    session = get_session()
    similar_ids = parse_similar_ids(body.get("similar_ids"), submission_id)
    example = update_category(session, submission_id, body.get("category"), actor=current_actor())
    also = update_categories(session, similar_ids, body.get("category"), actor=current_actor())
    session.commit()
    return jsonify(
        {
            "id": submission_id,
            "category": example.corrected_category,
            "training_example_id": example.id,
            "is_correction": example.is_correction,
            "also_saved": [
                {
                    "id": submission_id,
                    "training_example_id": other.id,
                    "is_correction": other.is_correction,
                }
                for submission_id, other in zip(similar_ids, also, strict=True)
            ],
        }
    )


@bp.get("/categories")
@bp.alt_response(200, schema=api_schemas.Items, description="the categories", success=True)
@admin_required
def categories():
    return jsonify({"items": [category_to_dict(c) for c in list_categories(get_session())]})


@bp.post("/categories")
@bp.alt_response(201, schema=api_schemas.Category, description="the new category", success=True)
@admin_required
@bp.arguments(api_requests.NewCategory)
def create_category(body: dict):
    session = get_session()
    category = add_category(session, body["name"], body["description"])
    session.commit()
    return jsonify(category_to_dict(category)), 201


@bp.patch("/categories/<int:category_id>")
@bp.alt_response(200, schema=api_schemas.Category, description="the changed category", success=True)
@admin_required
@bp.arguments(api_requests.CategoryChange)
def change_category(body: dict, category_id: int):
    session = get_session()
    category = edit_category(
        session, category_id, description=body["description"], active=body["active"]
    )
    session.commit()
    return jsonify(category_to_dict(category))


@bp.get("/training-stats")
@bp.alt_response(
    200,
    schema=api_schemas.TrainingStats,
    description="counts and data quality of the training examples",
    success=True,
)
@admin_required
def stats():
    return jsonify(training_stats(get_session()))


@bp.get("/training-examples")
@bp.alt_response(
    200, schema=api_schemas.Page, description="one page of training examples", success=True
)
@admin_required
@bp.arguments(api_requests.TrainingExamplesQuery, location="query")
def training_examples(query: dict):
    result = list_training_examples(
        get_session(),
        page=query["page"],
        per_page=query["per_page"],
        category=query["category"] or None,
        is_correction=query["is_correction"],
        ids=query["ids"],
        q=query["q"],
    )
    return jsonify(
        {
            "items": [_with_matches(example_to_dict(item), query["q"]) for item in result.items],
            "total": result.total,
            "page": result.page,
            "per_page": result.per_page,
        }
    )


@bp.delete("/training-example/<int:example_id>")
@bp.alt_response(204, description="deleted", success=True)
@admin_required
def remove_training_example(example_id: int):
    session = get_session()
    delete_training_example(session, example_id)
    session.commit()
    return "", 204


@bp.post("/training-examples/bulk-delete")
@bp.alt_response(
    200, schema=api_schemas.ExamplesDeleted, description="how many were deleted", success=True
)
@admin_required
@bp.arguments(api_requests.ExampleIds)
def bulk_delete_training_examples(body: dict):
    session = get_session()
    deleted = delete_training_examples(session, body["ids"])
    session.commit()
    return jsonify({"deleted": deleted})


@bp.post("/training-examples/bulk-relabel")
@bp.alt_response(
    200,
    schema=api_schemas.ExamplesRelabelled,
    description="the examples with their new category",
    success=True,
)
@admin_required
@bp.arguments(api_requests.ExamplesRelabel)
def bulk_relabel_training_examples(body: dict):
    session = get_session()
    examples = relabel_training_examples(session, body["ids"], body["category"])
    session.commit()
    return jsonify(
        {
            "relabelled": len(examples),
            "category": examples[0].corrected_category,
            "items": [example_to_dict(example) for example in examples],
        }
    )
