"""Submissions: validate and store what the public sends, classify it, and let admins
set the category, turning every decision into a training example.

Plain Python: the web routes, the CLI and the worker call these with a session and
commit themselves. No submission is ever lost to a classifier failure: it is stored
with no category and the error, and can be classified later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.classifier.base import CategorySpec
from shared.config import Config
from shared.deployment.active_model import Classification
from shared.errors import InvalidInput, NotFound
from shared.inputs import MAX_PAGE, clean_text, is_id, parse_whole_number
from shared.models import ShadowPrediction, Submission, TrainingExample, utcnow
from shared.search import message_matches
from shared.submissions.categories import active_category_specs, require_active_category
from shared.training.data_quality import similar_groups

logger = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = 5000
MAX_PER_PAGE = 200
ORDERS = ("newest", "oldest", "uncertain")
MAX_SIMILAR = 500  # folded submissions one decision may also be applied to
MAX_BULK = 10_000  # submissions one bulk decision may set (ids or a filter)


CLASSIFYING = "classifying"


class ClassifiesTexts(Protocol):
    """What submissions need from a model: the analyzer or ``ActiveModel`` provide it."""

    def classify(self, texts: list[str], categories: list[CategorySpec]) -> Classification: ...


def clean_message(message: object) -> str:
    """The normalised, stripped message, or InvalidInput saying what is wrong
    (``shared.inputs.clean_text``: NUL, unpaired surrogates, invisible-only text)."""
    return clean_text(message, "message", MAX_MESSAGE_LENGTH)


def clean_contributor_type(contributor_type: object, config: Config) -> str:
    if not isinstance(contributor_type, str) or contributor_type.strip() not in (
        config.contributor_types
    ):
        raise InvalidInput(
            f"contributor_type must be one of: {', '.join(config.contributor_types)}"
        )
    return contributor_type.strip()


def classify_submissions(
    session: Session, analyzer: ClassifiesTexts | None, submissions: Sequence[Submission]
) -> bool:
    """Classify ``submissions`` in one batch with the active categories.

    On any classifier failure the submissions keep no category and record the error;
    returns whether classification worked.
    """
    if not submissions:
        return True
    try:
        if analyzer is None:
            raise RuntimeError("no classifier is configured")
        categories = active_category_specs(session)
        if not categories:
            raise RuntimeError("there is no active category to classify into")
        result = analyzer.classify([s.message for s in submissions], categories)
        if len(result.predictions) != len(submissions):
            raise RuntimeError("the classifier returned a wrong number of predictions")
    except Exception as error:
        detail = f"{type(error).__name__}: {error}"[:2000]
        logger.warning("classification failed submissions=%d error=%s", len(submissions), detail)
        for submission in submissions:
            submission.classification_error = detail
        return False
    for submission, prediction in zip(submissions, result.predictions, strict=True):
        submission.predicted_category = prediction.label
        submission.confidence = prediction.confidence
        submission.scores = dict(prediction.scores)
        submission.model_version = result.version
        submission.classification_error = None
        if submission.reviewed_at is None:  # an admin's choice outranks the model
            submission.category = prediction.label
    _store_shadow_predictions(session, submissions, result)
    return True


def _store_shadow_predictions(
    session: Session, submissions: Sequence[Submission], result: Classification
) -> None:
    """The model in shadow's answers for new submissions, beside the served ones (the
    public never sees them; ``shared.deployment.shadow`` reports on them)."""
    shadow = getattr(result, "shadow", None)
    shadow_id = getattr(result, "shadow_id", None)
    if shadow is None or shadow_id is None or len(shadow.predictions) != len(submissions):
        return
    for submission, prediction in zip(submissions, shadow.predictions, strict=True):
        # Only a submission's first classification, in the request or on the worker
        # (``classification_pending``): one answer each, never a re-classification.
        if submission.id is not None and not submission.classification_pending:
            continue
        session.add(
            ShadowPrediction(
                shadow_id=shadow_id,
                submission=submission,
                served_category=submission.predicted_category,
                served_version=submission.model_version,
                shadow_category=prediction.label,
                shadow_confidence=prediction.confidence,
                shadow_version=shadow.version,
            )
        )


def _record_decision(
    session: Session,
    submission: Submission,
    example: TrainingExample | None,
    chosen: str,
    now: datetime,
) -> TrainingExample:
    """An admin's category for ``submission``: the submission is reviewed and its
    training example (``example``, or a new one) says what the model had suggested."""
    if example is None:
        example = TrainingExample(submission_id=submission.id)
        session.add(example)
    example.message = submission.message
    example.original_category = submission.predicted_category
    example.confidence_score = submission.confidence
    example.corrected_category = chosen
    example.contributor_type = submission.contributor_type
    example.correction_timestamp = now
    example.is_correction = chosen != submission.predicted_category
    submission.category = chosen
    submission.reviewed_at = now
    return example


def create_submission(
    session: Session,
    analyzer: ClassifiesTexts | None,
    message: object,
    contributor_type: object,
    config: Config,
    *,
    defer: bool = False,
) -> Submission:
    """Validate, store and classify one submission (the caller commits).

    With ``defer`` it is only stored, waiting for a worker to classify it
    (``shared.submissions.classification_queue``). Bad input raises InvalidInput before
    anything is added to the session.
    """
    submission = Submission(
        message=clean_message(message),
        contributor_type=clean_contributor_type(contributor_type, config),
    )
    if defer:
        submission.classification_pending = True
    else:
        classify_submissions(session, analyzer, [submission])
    session.add(submission)
    session.flush()
    return submission


def classification_status(submission: Submission) -> str:
    """``classifying`` (stored, a worker will classify it), ``classified``, or ``failed``
    (the classifier failed; ``classification_error`` says why)."""
    if submission.classification_pending:
        return CLASSIFYING
    if submission.classification_error:
        return "failed"
    return "classified"


def submission_to_dict(submission: Submission) -> dict[str, Any]:
    return {
        "id": submission.id,
        "message": submission.message,
        "contributor_type": submission.contributor_type,
        "category": submission.category,
        "confidence": submission.confidence,
        "model_version": submission.model_version,
        "predicted_category": submission.predicted_category,
        "scores": submission.scores,
        "classification_error": submission.classification_error,
        "status": classification_status(submission),
        "reviewed_at": submission.reviewed_at.isoformat() if submission.reviewed_at else None,
        "created_at": submission.created_at.isoformat() if submission.created_at else None,
    }


@dataclass(frozen=True)
class Page:
    items: list[Any]
    total: int
    page: int
    per_page: int
    # With ``fold_similar``: the submissions folded under each listed one (by id), and
    # how many were folded in all; ``total`` then counts the listed ones.
    similar: dict[int, list[Any]] = field(default_factory=dict)
    folded: int = 0

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def parse_page(page: object, per_page: object, default_per_page: int = 25) -> tuple[int, int]:
    """Page number and size from query strings; InvalidInput for nonsense."""
    page_number = 1 if page in (None, "") else parse_whole_number(page, "page", 1, MAX_PAGE)
    size = (
        default_per_page
        if per_page in (None, "")
        else parse_whole_number(per_page, "per_page", 1, MAX_PER_PAGE)
    )
    return page_number, size


def matching_submissions(
    session: Session,
    *,
    category: str | None = None,
    unreviewed: bool = False,
    q: str | None = None,
    ids: Sequence[int] | None = None,
) -> Any:
    """A ``select(Submission)`` with the list's filters (no order): the one definition of
    "the submissions matching this filter" for the list, the review queue and bulk saves."""
    query = select(Submission)
    if category:
        query = query.where(Submission.category == category)
    if unreviewed:
        query = query.where(Submission.reviewed_at.is_(None))
    words = message_matches(Submission.message, q, session.get_bind().dialect.name)
    if words is not None:
        query = query.where(words)
    if ids is not None:
        query = query.where(Submission.id.in_(ids))
    return query


def list_submissions(
    session: Session,
    *,
    page: int = 1,
    per_page: int = 25,
    category: str | None = None,
    unreviewed: bool = False,
    order: str = "newest",
    fold_similar: bool = False,
    q: str | None = None,
    ids: Sequence[int] | None = None,
) -> Page:
    """Submissions, filtered; ``order="uncertain"`` puts the least confident first
    (that is where a correction teaches the model most; unclassified ones come first).
    ``q`` keeps those holding every word of it (``shared.search``).

    ``fold_similar`` folds exact and near duplicates (``shared.training.data_quality``) under
    the first of them in this order, so a review queue shows each text once;
    ``Page.similar`` holds the folded ones, which an admin can set in one go
    (``update_categories``).
    """
    if order not in ORDERS:
        raise InvalidInput(f"order must be one of: {', '.join(ORDERS)}")
    query = matching_submissions(session, category=category, unreviewed=unreviewed, q=q, ids=ids)
    if order == "uncertain":
        query = query.order_by(
            Submission.confidence.is_not(None), Submission.confidence.asc(), Submission.id.asc()
        )
    elif order == "oldest":
        query = query.order_by(Submission.id.asc())
    else:
        query = query.order_by(Submission.id.desc())
    if fold_similar:
        return _folded_page(session, query, page, per_page)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = list(session.scalars(query.offset((page - 1) * per_page).limit(per_page)))
    return Page(items=items, total=total, page=page, per_page=per_page)


def count_reviewed(session: Session, *, category: str | None = None, q: str | None = None) -> int:
    """How many submissions matching the filter an admin has already decided."""
    query = matching_submissions(session, category=category, q=q).where(
        Submission.reviewed_at.is_not(None)
    )
    return session.scalar(select(func.count()).select_from(query.subquery())) or 0


def _folded_page(session: Session, query: Any, page: int, per_page: int) -> Page:
    """One page of ``query`` with near duplicates folded under the first of each group.

    Groups need every matching text, so this reads ids and messages of all of them
    (5,000 take about 0.2 s, ``bench/review_queue.py``); only the page's rows load in
    full. A group shows at most ``MAX_SIMILAR`` folded ones (what one decision may
    cover); the rest come up once those are reviewed.
    """
    rows = session.execute(query.with_only_columns(Submission.id, Submission.message)).all()
    groups = similar_groups([message for _, message in rows])
    shown = [group[: MAX_SIMILAR + 1] for group in groups[(page - 1) * per_page : page * per_page]]
    wanted = [rows[position][0] for group in shown for position in group]
    loaded = {
        submission.id: submission
        for submission in session.scalars(select(Submission).where(Submission.id.in_(wanted)))
    }
    items = [loaded[rows[group[0]][0]] for group in shown]
    similar = {
        rows[group[0]][0]: [loaded[rows[position][0]] for position in group[1:]]
        for group in shown
        if len(group) > 1
    }
    return Page(
        items=items,
        total=len(groups),
        page=page,
        per_page=per_page,
        similar=similar,
        folded=len(rows) - len(groups),
    )


def get_submission(session: Session, submission_id: int) -> Submission:
    submission = session.get(Submission, submission_id)
    if submission is None:
        raise NotFound(f"submission {submission_id} does not exist")
    return submission


def update_category(
    session: Session, submission_id: int, category: object, actor: str
) -> TrainingExample:
    """Set a submission's category and record the decision as its one training example.

    The example snapshots the message, the model's prediction and its confidence, the
    admin's category and the contributor type. ``is_correction`` says whether the admin
    disagreed with the model (a confirmation is training data too). A second change of
    the same submission updates its example. The caller commits.
    """
    chosen = require_active_category(session, category).name
    submission = get_submission(session, submission_id)
    now = utcnow()
    example = session.scalar(
        select(TrainingExample).where(TrainingExample.submission_id == submission.id)
    )
    example = _record_decision(session, submission, example, chosen, now)
    session.flush()
    logger.info(
        "category set submission=%s category=%r correction=%s actor=%s example=%s",
        submission.id,
        chosen,
        example.is_correction,
        actor,
        example.id,
    )
    return example


def parse_similar_ids(value: object, submission_id: int) -> list[int]:
    """The other submissions a decision also applies to: a list of distinct ids."""
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(is_id(item) for item in value):
        raise InvalidInput("similar_ids must be a list of submission ids")
    if len(value) > MAX_SIMILAR:
        raise InvalidInput(f"similar_ids may hold at most {MAX_SIMILAR} ids")
    if len(set(value)) != len(value) or submission_id in value:
        raise InvalidInput("similar_ids must be distinct and not repeat the submission itself")
    return list(value)


def update_categories(
    session: Session, submission_ids: Sequence[int], category: object, actor: str
) -> list[TrainingExample]:
    """``update_category`` for each id, in order (one decision for near duplicates).

    Every id must exist; on an error the caller rolls back, so either all of them
    change or none does.
    """
    return [
        update_category(session, submission_id, category, actor) for submission_id in submission_ids
    ]


def bulk_update_category(
    session: Session, submission_ids: Sequence[int], category: object, actor: str
) -> list[TrainingExample]:
    """One category for many submissions, each decision its training example, as
    ``update_category`` would record it, in a few queries instead of one per id.

    Every id must exist (NotFound naming the missing ones, before anything changes);
    the caller commits, or rolls back on an error.
    """
    chosen = require_active_category(session, category).name
    wanted = list(dict.fromkeys(submission_ids))
    if len(wanted) > MAX_BULK:
        raise InvalidInput(f"at most {MAX_BULK} submissions at once")
    submissions: dict[int, Submission] = {}
    for chunk in _chunks(wanted):
        for submission in session.scalars(select(Submission).where(Submission.id.in_(chunk))):
            submissions[submission.id] = submission
    missing = [submission_id for submission_id in wanted if submission_id not in submissions]
    if missing:
        shown = ", ".join(str(submission_id) for submission_id in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise NotFound(f"no submission with id {shown}{more}: nothing was saved")
    examples: dict[int, TrainingExample] = {}
    for chunk in _chunks(wanted):
        for example in session.scalars(
            select(TrainingExample).where(TrainingExample.submission_id.in_(chunk))
        ):
            examples[example.submission_id] = example  # type: ignore[index]
    now = utcnow()
    saved = []
    for submission_id in wanted:
        submission = submissions[submission_id]
        example = examples.get(submission_id)
        saved.append(_record_decision(session, submission, example, chosen, now))
    session.flush()
    logger.info(
        "bulk category set submissions=%d category=%r corrections=%d actor=%s",
        len(saved),
        chosen,
        sum(1 for example in saved if example.is_correction),
        actor,
    )
    return saved


def ids_matching(
    session: Session,
    *,
    category: str | None = None,
    unreviewed: bool = False,
    q: str | None = None,
) -> list[int]:
    """Ids of every submission matching the filter, oldest first; InvalidInput past
    ``MAX_BULK`` (a bulk decision that large is more likely a slip than a choice)."""
    query = matching_submissions(session, category=category, unreviewed=unreviewed, q=q)
    ids = list(session.scalars(query.with_only_columns(Submission.id).order_by(Submission.id)))
    if len(ids) > MAX_BULK:
        raise InvalidInput(
            f"{len(ids)} submissions match this filter; narrow it to at most {MAX_BULK}"
        )
    return ids


def clear_categories(session: Session, submission_ids: Sequence[int], actor: str) -> int:
    """Undo decisions: each submission goes back to the model's category, not reviewed,
    and its training example is deleted. Every id must exist (NotFound, nothing changed).
    Returns how many examples were deleted; the caller commits."""
    wanted = list(dict.fromkeys(submission_ids))
    submissions = [
        submission
        for chunk in _chunks(wanted)
        for submission in session.scalars(select(Submission).where(Submission.id.in_(chunk)))
    ]
    found = {submission.id for submission in submissions}
    missing = [submission_id for submission_id in wanted if submission_id not in found]
    if missing:
        raise NotFound(
            f"no submission with id {', '.join(map(str, missing[:10]))}: nothing was changed"
        )
    examples = [
        example
        for chunk in _chunks(wanted)
        for example in session.scalars(
            select(TrainingExample).where(TrainingExample.submission_id.in_(chunk))
        )
    ]
    for example in examples:
        session.delete(example)
    for submission in submissions:
        submission.category = submission.predicted_category
        submission.reviewed_at = None
    session.flush()
    logger.info(
        "decisions cleared submissions=%d examples=%d actor=%s",
        len(submissions),
        len(examples),
        actor,
    )
    return len(examples)


def _chunks(ids: list[int], size: int = 1000) -> list[list[int]]:
    """IN lists of at most ``size`` ids (SQLite allows 32,766 parameters, PostgreSQL more)."""
    return [ids[start : start + size] for start in range(0, len(ids), size)]
