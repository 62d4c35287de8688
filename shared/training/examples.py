"""Training examples: listing, deleting, and the stats the dashboard shows before training."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.errors import InvalidInput, NotFound
from shared.inputs import MAX_ID, parse_whole_number
from shared.models import Submission, TrainingExample, utcnow
from shared.search import message_matches
from shared.settings_store import get_setting
from shared.submissions.categories import list_categories, require_active_category
from shared.submissions.records import Page
from shared.training.readiness import check_readiness
from shared.training_config import DEFAULT_SPLIT

MAX_IDS_FILTER = 500


def example_to_dict(example: TrainingExample) -> dict[str, Any]:
    return {
        "id": example.id,
        "submission_id": example.submission_id,
        "message": example.message,
        "original_category": example.original_category,
        "corrected_category": example.corrected_category,
        "confidence_score": example.confidence_score,
        "contributor_type": example.contributor_type,
        "is_correction": example.is_correction,
        "used_in_training": example.used_in_training,
        "training_run_id": example.training_run_id,
        "correction_timestamp": (
            example.correction_timestamp.isoformat() if example.correction_timestamp else None
        ),
    }


def parse_ids(raw: object) -> list[int] | None:
    """``"3,5,8"`` → [3, 5, 8] (the dashboard links offending examples this way)."""
    if raw in (None, ""):
        return None
    parts = [part for part in str(raw).split(",") if part.strip()]
    if len(parts) > MAX_IDS_FILTER:
        raise InvalidInput(f"at most {MAX_IDS_FILTER} ids at once")
    return [parse_whole_number(part, "ids", 1, MAX_ID) for part in parts]


def parse_is_correction(raw: object) -> bool | None:
    if raw in (None, ""):
        return None
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise InvalidInput("is_correction must be true or false")


def list_training_examples(
    session: Session,
    *,
    page: int = 1,
    per_page: int = 50,
    category: str | None = None,
    is_correction: bool | None = None,
    ids: list[int] | None = None,
    q: str | None = None,
) -> Page:
    """Examples, newest decision first, filtered by category, kind, ids or words."""
    query = select(TrainingExample)
    words = message_matches(TrainingExample.message, q, session.get_bind().dialect.name)
    if words is not None:
        query = query.where(words)
    if category:
        query = query.where(TrainingExample.corrected_category == category)
    if is_correction is not None:
        query = query.where(TrainingExample.is_correction.is_(is_correction))
    if ids is not None:
        query = query.where(TrainingExample.id.in_(ids))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    query = query.order_by(TrainingExample.correction_timestamp.desc(), TrainingExample.id.desc())
    items = list(session.scalars(query.offset((page - 1) * per_page).limit(per_page)))
    return Page(items=items, total=total, page=page, per_page=per_page)


def delete_training_example(session: Session, example_id: int) -> None:
    """Remove one example (the submission keeps its category). The caller commits."""
    example = session.get(TrainingExample, example_id)
    if example is None:
        raise NotFound(f"training example {example_id} does not exist")
    session.delete(example)
    session.flush()


def _existing_examples(session: Session, example_ids: list[int]) -> list[TrainingExample]:
    """The examples with these ids, in that order; NotFound (nothing changed) if any is missing."""
    wanted = list(dict.fromkeys(example_ids))
    if len(wanted) > MAX_IDS_FILTER:
        raise InvalidInput(f"at most {MAX_IDS_FILTER} training examples at once")
    found = {
        example.id: example
        for example in session.scalars(
            select(TrainingExample).where(TrainingExample.id.in_(wanted))
        )
    }
    missing = [example_id for example_id in wanted if example_id not in found]
    if missing:
        raise NotFound(
            f"no training example with id {', '.join(map(str, missing[:10]))}: nothing was changed"
        )
    return [found[example_id] for example_id in wanted]


def delete_training_examples(session: Session, example_ids: list[int]) -> int:
    """Remove these examples (their submissions keep their category); all or none.
    Returns how many were deleted. The caller commits."""
    examples = _existing_examples(session, example_ids)
    for example in examples:
        session.delete(example)
    session.flush()
    return len(examples)


def relabel_training_examples(
    session: Session, example_ids: list[int], category: object
) -> list[TrainingExample]:
    """Give these examples one category (all or none). Each stays a correction exactly
    when the category differs from the model's, and its submission, if it still exists,
    takes the same category, so the list and the training data agree. The caller commits."""
    chosen = require_active_category(session, category).name
    examples = _existing_examples(session, example_ids)
    now = utcnow()
    submission_ids = [e.submission_id for e in examples if e.submission_id is not None]
    submissions = {
        submission.id: submission
        for submission in session.scalars(
            select(Submission).where(Submission.id.in_(submission_ids))
        )
    }
    for example in examples:
        example.corrected_category = chosen
        example.is_correction = chosen != example.original_category
        example.correction_timestamp = now
        submission = submissions.get(example.submission_id)  # type: ignore[arg-type]
        if submission is not None:
            submission.category = chosen
            submission.reviewed_at = now
    session.flush()
    return examples


def doubts_since(session: Session, issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A run's labels to check (``results.training.label_issues``), each with what its
    example says now: ``now`` is ``"unchanged"`` (still the label the run doubted),
    ``"relabelled"`` (``now_label`` names the category) or ``"deleted"``; an issue
    without an example id (a run from the command line) is ``"unknown"``. A run's list is
    its record of the labels it trained on; this is what admins have done about it."""
    ids = [issue["id"] for issue in issues if isinstance(issue.get("id"), int)]
    rows = session.execute(
        select(TrainingExample.id, TrainingExample.corrected_category).where(
            TrainingExample.id.in_(ids)
        )
    )
    current = {example_id: label for example_id, label in rows}
    followed = []
    for issue in issues:
        example_id = issue.get("id")
        if not isinstance(example_id, int):
            followed.append({**issue, "now": "unknown", "now_label": None})
        elif example_id not in current:
            followed.append({**issue, "now": "deleted", "now_label": None})
        elif current[example_id] == issue.get("label"):
            followed.append({**issue, "now": "unchanged", "now_label": current[example_id]})
        else:
            followed.append({**issue, "now": "relabelled", "now_label": current[example_id]})
    return followed


def training_stats(session: Session) -> dict[str, Any]:
    """Totals, corrections vs confirmations, per-category counts, quality and readiness.

    ``ready`` is ``shared.training.readiness``'s verdict with the default split, the one
    start-training and the worker apply: at least ``min_training_examples`` examples, and
    nothing that must stop a run (``blocking_errors``) in the data as training keeps it.
    """
    rows = session.execute(
        select(
            TrainingExample.id,
            TrainingExample.message,
            TrainingExample.corrected_category,
            TrainingExample.is_correction,
        ).order_by(TrainingExample.id)
    ).all()
    active = [category.name for category in list_categories(session, active_only=True)]
    minimum = int(get_setting(session, "min_training_examples"))
    readiness = check_readiness(
        ((row.id, row.message, row.corrected_category) for row in rows),
        split=DEFAULT_SPLIT,
        categories=active,
        minimum=minimum,
    )
    report = readiness.report
    corrections = sum(1 for row in rows if row.is_correction)
    return {
        "total": len(rows),
        "corrections": corrections,
        "confirmations": len(rows) - corrections,
        "per_category": dict(sorted(report.per_category.items())),
        "quality": {
            "duplicates": report.duplicates,
            "duplicate_ids": list(report.duplicate_ids),
            "near_duplicates": report.near_duplicates,
            "near_duplicate_ids": list(report.near_duplicate_ids),
            "conflicts": report.conflicts,
            "conflict_ids": list(report.conflict_ids),
            # The copies past the first of each duplicate group whose copies agree:
            # deleting them keeps one of each text (conflicting groups need a relabel).
            "duplicate_copy_ids": [
                example_id
                for group in report.duplicate_groups
                if group not in report.conflict_groups
                for example_id in group[1:]
            ],
            "conflict_groups": [_conflict_group(group, rows) for group in report.conflict_groups],
            "too_short": report.too_short,
            "too_short_ids": list(report.too_short_ids),
            "too_long": report.too_long,
            "too_long_ids": list(report.too_long_ids),
            "imbalance_ratio": report.imbalance_ratio,
            "small_categories": list(report.small_categories),
            "warnings": list(report.warnings),
            "blocking_errors": list(readiness.errors),
        },
        "ready": readiness.ready,
        "min_training_examples": minimum,
    }


def _conflict_group(group: tuple[Any, ...], rows: list[Any]) -> dict[str, Any]:
    """One text stored with different categories: its example ids and the categories."""
    by_id = {row.id: row for row in rows}
    return {
        "ids": list(group),
        "message": by_id[group[0]].message,
        "categories": sorted({by_id[example_id].corrected_category for example_id in group}),
    }
