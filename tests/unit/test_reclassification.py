"""Re-classifying unreviewed submissions: a dry run changes nothing, applying updates them."""

from __future__ import annotations

import json

from sqlalchemy import select

from shared.classifier.base import CategorySpec
from shared.deployment.active_model import Classification
from shared.models import DeploymentEvent, Submission, utcnow
from shared.submissions.reclassification import latest_reclassification, reclassify_unreviewed
from tests.factories import make_submission
from tests.unit.fakes import KeywordClassifier

CATEGORIES = [CategorySpec("roads", "roads"), CategorySpec("parks", "parks")]


def new_model(texts, categories):
    return Classification(KeywordClassifier().classify(texts, categories), "run-7")


def seed(session):
    moving = [
        make_submission(session, message=f"the roads {n}", category="parks") for n in range(3)
    ]
    staying = make_submission(session, message="the parks", category="parks")
    reviewed = make_submission(
        session, message="the roads again", category="parks", reviewed_at=utcnow()
    )
    session.commit()
    return moving, staying, reviewed


def test_a_dry_run_counts_the_moves_and_changes_nothing(session) -> None:
    moving, _, _ = seed(session)

    summary = reclassify_unreviewed(session, new_model, CATEGORIES, dry_run=True)

    assert summary["examined"] == 4
    assert summary["changed"] == 3
    assert summary["sentences"] == ["3 submissions would move from parks to roads"]
    session.expire_all()
    assert {s.category for s in session.scalars(select(Submission))} == {"parks"}


def test_applying_moves_unreviewed_submissions_and_stamps_the_model_version(session) -> None:
    moving, staying, reviewed = seed(session)

    reclassify_unreviewed(session, new_model, CATEGORIES, dry_run=False)

    session.expire_all()
    assert {session.get(Submission, s.id).category for s in moving} == {"roads"}
    assert session.get(Submission, moving[0].id).model_version == "run-7"
    assert session.get(Submission, reviewed.id).category == "parks"  # an admin's choice stays


def test_the_summary_is_kept_as_an_event_with_progress_reported(session) -> None:
    seed(session)
    seen = []

    reclassify_unreviewed(
        session,
        new_model,
        CATEGORIES,
        actor="alice",
        progress=lambda d, t: seen.append((d, t)),
        batch_size=2,
    )

    assert seen == [(0, 4), (2, 4), (4, 4)]
    event = session.scalar(select(DeploymentEvent))
    assert (event.action, event.outcome, event.actor) == ("reclassify", "dry-run", "alice")
    assert json.loads(event.detail)["changed"] == 3
    assert latest_reclassification(session)["changed"] == 3
