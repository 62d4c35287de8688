"""Training stats, listing and deleting examples (core, SQLite)."""

import pytest

from shared.errors import InvalidInput, NotFound
from shared.seed import seed_default_categories
from shared.settings_store import set_setting
from shared.training.examples import (
    delete_training_example,
    list_training_examples,
    parse_ids,
    training_stats,
)
from tests.factories import make_training_example


def test_stats_add_up_and_flag_quality_problems(session):
    seed_default_categories(session)
    same = "The bins on Elm Street were not emptied this week"
    a = make_training_example(session, message=same, corrected_category="waste and recycling")
    b = make_training_example(
        session, message=same.upper(), corrected_category="housing", is_correction=True
    )
    short = make_training_example(session, message="bins", corrected_category="housing")
    make_training_example(
        session, message="A bus was late again this morning", corrected_category="public transport"
    )
    stats = training_stats(session)
    assert stats["total"] == 4
    assert stats["corrections"] + stats["confirmations"] == stats["total"]
    assert stats["corrections"] == 1
    assert sum(stats["per_category"].values()) == stats["total"]
    assert stats["per_category"]["parks and green spaces"] == 0
    quality = stats["quality"]
    assert quality["duplicates"] == 1 and quality["conflicts"] == 1
    assert set(quality["conflict_ids"]) == {a.id, b.id}
    assert quality["too_short_ids"] == [short.id]
    assert quality["warnings"]
    assert stats["ready"] is False and stats["min_training_examples"] == 20


def test_ready_when_enough_clean_examples(session):
    seed_default_categories(session)
    set_setting(session, "min_training_examples", 6)
    for i in range(3):
        make_training_example(
            session,
            message=f"bus number {i} was late at stop {i * 7}",
            corrected_category="public transport",
        )
        make_training_example(
            session,
            message=f"pothole number {i} on road {i * 5} is deep",
            corrected_category="roads and traffic",
        )
    # Three each: a category with 3 examples trains on all of them, so no test text.
    waiting = training_stats(session)
    assert waiting["ready"] is False
    assert waiting["quality"]["blocking_errors"] == [
        "No example is left for the test set: a category with 3 examples trains on all of "
        "them, and no category here has more. Add examples: a category with 4 or more "
        "gives one to the test set (more make a clearer test)."
    ]
    make_training_example(
        session, message="bus number 9 never came at all", corrected_category="public transport"
    )
    assert training_stats(session)["ready"] is True


def test_listing_filters_by_category_kind_and_ids(session):
    a = make_training_example(session, corrected_category="housing", is_correction=True)
    make_training_example(session, corrected_category="housing", is_correction=False)
    c = make_training_example(session, corrected_category="other", is_correction=True)
    assert list_training_examples(session, category="housing").total == 2
    assert list_training_examples(session, is_correction=True).total == 2
    assert {e.id for e in list_training_examples(session, ids=[a.id, c.id]).items} == {a.id, c.id}


def test_delete_then_delete_again_is_not_found(session):
    example = make_training_example(session)
    delete_training_example(session, example.id)
    with pytest.raises(NotFound):
        delete_training_example(session, example.id)


def test_ids_filter_must_be_numbers():
    assert parse_ids("1, 2,3") == [1, 2, 3]
    with pytest.raises(InvalidInput):
        parse_ids("1,two")
