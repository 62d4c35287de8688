"""Creating submissions, listing them, and update_category's training examples (core, SQLite)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared.db import make_engine, make_session_factory
from shared.deployment.active_model import ActiveModel
from shared.errors import InvalidInput, NotFound
from shared.models import Submission, TrainingExample
from shared.seed import seed_default_categories
from shared.submissions.records import (
    MAX_MESSAGE_LENGTH,
    create_submission,
    list_submissions,
    parse_similar_ids,
    update_categories,
    update_category,
)
from tests.factories import make_category, make_submission
from tests.unit.fakes import KeywordClassifier


@pytest.fixture
def analyzer(config, session):
    seed_default_categories(session)
    session.commit()
    sessions = make_session_factory(make_engine(config.database_url))
    return ActiveModel(config, sessions, load_base=lambda _config: KeywordClassifier())


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_a_submission_is_stored_with_the_models_category_and_version(session, analyzer, config):
    submission = create_submission(
        session, analyzer, "  The housing repairs are late  ", "resident", config
    )
    session.commit()
    assert submission.message == "The housing repairs are late"
    assert submission.category == submission.predicted_category == "housing"
    assert submission.model_version == analyzer.current_version()
    assert submission.model_version.startswith("base:")
    assert 0 < submission.confidence <= 1
    assert set(submission.scores) >= {"housing", "other"}
    assert submission.classification_error is None


@pytest.mark.parametrize(
    ("message", "contributor_type", "complaint"),
    [
        ("", "resident", "message is required"),
        ("   \n\t ", "resident", "message is required"),
        (None, "resident", "message is required"),
        (42, "resident", "message must be text"),
        ("x" * (MAX_MESSAGE_LENGTH + 1), "resident", "too long"),
        ("a fine message", "alien", "contributor_type must be one of"),
        ("a fine message", None, "contributor_type must be one of"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    session, analyzer, config, message, contributor_type, complaint
):
    with pytest.raises(InvalidInput, match=complaint):
        create_submission(session, analyzer, message, contributor_type, config)
    session.commit()
    assert count(session, Submission) == 0


def test_a_message_of_exactly_the_maximum_length_is_accepted(session, analyzer, config):
    submission = create_submission(session, analyzer, "y" * MAX_MESSAGE_LENGTH, "business", config)
    assert len(submission.message) == MAX_MESSAGE_LENGTH


def test_a_classifier_failure_still_stores_the_submission_without_a_category(session, config):
    seed_default_categories(session)
    sessions = make_session_factory(make_engine(config.database_url))
    broken = ActiveModel(config, sessions, load_base=lambda _c: KeywordClassifier(fail=True))
    submission = create_submission(session, broken, "the bins were not emptied", "resident", config)
    session.commit()
    stored = session.get(Submission, submission.id)
    assert stored.category is None
    assert stored.model_version is None
    assert "the model exploded" in stored.classification_error


def test_no_active_category_is_recorded_as_a_classification_error(session, config):
    sessions = make_session_factory(make_engine(config.database_url))
    model = ActiveModel(config, sessions, load_base=lambda _c: KeywordClassifier())
    submission = create_submission(session, model, "hello there", "resident", config)
    assert submission.category is None
    assert "no active category" in submission.classification_error


def test_a_correction_creates_an_example_that_remembers_the_prediction(session, analyzer, config):
    submission = create_submission(session, analyzer, "my rent is too high", "resident", config)
    predicted, confidence = submission.predicted_category, submission.confidence
    example = update_category(session, submission.id, "taxes and payments", actor="ann")
    session.commit()
    assert example.is_correction is True
    assert example.original_category == predicted
    assert example.corrected_category == "taxes and payments"
    assert example.confidence_score == confidence
    assert example.message == "my rent is too high"
    assert example.contributor_type == "resident"
    assert example.correction_timestamp is not None
    assert submission.category == "taxes and payments"
    assert submission.predicted_category == predicted
    assert submission.reviewed_at is not None


def test_a_confirmation_creates_an_example_that_is_not_a_correction(session, analyzer, config):
    submission = create_submission(session, analyzer, "housing damp problem", "resident", config)
    example = update_category(session, submission.id, submission.predicted_category, actor="ann")
    assert example.is_correction is False
    assert example.corrected_category == example.original_category == "housing"


def test_a_second_change_updates_the_same_example(session, analyzer, config):
    submission = create_submission(session, analyzer, "housing damp problem", "resident", config)
    first = update_category(session, submission.id, "other", actor="ann")
    second = update_category(session, submission.id, "housing", actor="bob")
    session.commit()
    assert first.id == second.id
    assert count(session, TrainingExample) == 1
    assert second.corrected_category == "housing"
    assert second.is_correction is False


def test_an_unknown_category_is_refused_and_changes_nothing(session, analyzer, config):
    submission = create_submission(session, analyzer, "housing damp problem", "resident", config)
    with pytest.raises(InvalidInput, match="unknown category"):
        update_category(session, submission.id, "aliens", actor="ann")
    assert submission.category == "housing"
    assert count(session, TrainingExample) == 0


def test_an_inactive_category_cannot_be_chosen(session, analyzer, config):
    make_category(session, name="retired", active=False)
    submission = create_submission(session, analyzer, "housing damp problem", "resident", config)
    with pytest.raises(InvalidInput):
        update_category(session, submission.id, "retired", actor="ann")


def test_an_unknown_submission_is_not_found(session, analyzer):
    with pytest.raises(NotFound):
        update_category(session, 999, "housing", actor="ann")


def test_an_unclassified_submission_can_be_categorised_and_counts_as_a_correction(session):
    seed_default_categories(session)
    submission = make_submission(session, message="never classified")
    example = update_category(session, submission.id, "other", actor="ann")
    assert example.original_category is None
    assert example.is_correction is True


def test_listing_filters_by_category_and_review_and_orders_by_uncertainty(session):
    make_submission(session, category="housing", confidence=0.9)
    low = make_submission(session, category="housing", confidence=0.2)
    make_submission(session, category="other", confidence=0.5)
    unclassified = make_submission(session, category=None, confidence=None)
    reviewed = make_submission(session, category="housing", confidence=0.1)
    from shared.models import utcnow

    reviewed.reviewed_at = utcnow()
    session.flush()

    housing = list_submissions(session, category="housing")
    assert housing.total == 3
    unreviewed = list_submissions(session, unreviewed=True, order="uncertain")
    assert [s.id for s in unreviewed.items][:2] == [unclassified.id, low.id]
    assert reviewed.id not in [s.id for s in unreviewed.items]
    page_two = list_submissions(session, page=2, per_page=2)
    assert page_two.total == 5 and len(page_two.items) == 2


def test_an_unknown_order_is_refused(session):
    with pytest.raises(InvalidInput):
        list_submissions(session, order="random")


def test_the_review_queue_folds_near_duplicates_under_the_least_confident(session):
    seed_default_categories(session)
    light = "The streetlight on Elm Street is broken"
    first = make_submission(
        session, message=light + " again", category="roads and traffic", confidence=0.3
    )
    copies = [
        make_submission(
            session, message=message, category="roads and traffic", confidence=confidence
        )
        for message, confidence in ((light, 0.6), (light.upper() + "!", 0.9))
    ]
    other = make_submission(
        session, message="bins not emptied", category="waste and recycling", confidence=0.5
    )
    alone = make_submission(session, message="noise from the bar", category="other", confidence=0.8)
    reviewed = make_submission(session, message=light, category="roads and traffic", confidence=0.1)
    update_category(session, reviewed.id, "roads and traffic", actor="ann")

    queue = list_submissions(session, unreviewed=True, order="uncertain", fold_similar=True)

    assert [s.id for s in queue.items] == [first.id, other.id, alone.id]
    assert queue.similar == {first.id: copies}
    assert (queue.total, queue.folded) == (3, 2)
    second_page = list_submissions(
        session, unreviewed=True, order="uncertain", fold_similar=True, page=2, per_page=2
    )
    assert [s.id for s in second_page.items] == [alone.id] and second_page.pages == 2
    unfolded = list_submissions(session, unreviewed=True, order="uncertain")
    assert unfolded.total == 5 and unfolded.similar == {}

    # One decision for the group: every copy becomes its own training example.
    examples = update_categories(
        session, [first.id, *[c.id for c in copies]], "roads and traffic", "ann"
    )
    assert [e.submission_id for e in examples] == [first.id, *[c.id for c in copies]]
    after = list_submissions(session, unreviewed=True, order="uncertain", fold_similar=True)
    assert [s.id for s in after.items] == [other.id, alone.id] and after.folded == 0


@pytest.mark.parametrize(
    "value",
    ["1,2", [1, "2"], [True], [3, 3], [7], list(range(501))],
)
def test_bad_similar_ids_are_refused(value):
    with pytest.raises(InvalidInput):
        parse_similar_ids(value, submission_id=7)


def test_an_unknown_similar_submission_stops_the_whole_decision(session):
    seed_default_categories(session)
    known = make_submission(session, message="bins not emptied", category="waste and recycling")
    with pytest.raises(NotFound):
        update_categories(session, [known.id, 999], "other", "ann")
    session.rollback()
    assert count(session, TrainingExample) == 0


def test_a_folded_group_lists_at_most_what_one_decision_may_cover(session, monkeypatch):
    import shared.submissions.records

    monkeypatch.setattr(shared.submissions.records, "MAX_SIMILAR", 1)
    copies = [make_submission(session, message="bins not emptied") for _ in range(3)]
    queue = list_submissions(session, unreviewed=True, order="oldest", fold_similar=True)
    assert [s.id for s in queue.items] == [copies[0].id]
    assert queue.similar == {copies[0].id: [copies[1]]}
    assert queue.folded == 2
