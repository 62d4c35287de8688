"""Categories are data: admins add and edit them (core, SQLite)."""

import pytest

from shared.errors import Conflict, InvalidInput, NotFound
from shared.submissions.categories import active_category_specs, add_category, edit_category
from tests.factories import make_category


def test_a_new_category_is_active_and_read_by_the_model(session):
    add_category(session, "  street  lighting ", "broken street lights and lamps")
    specs = active_category_specs(session)
    assert [(s.name, s.description) for s in specs] == [
        ("street lighting", "broken street lights and lamps")
    ]


def test_a_duplicate_name_is_a_conflict_whatever_its_case(session):
    add_category(session, "Housing", "homes")
    with pytest.raises(Conflict):
        add_category(session, "housing", "homes again")


@pytest.mark.parametrize(
    ("name", "description"),
    [
        ("", "something"),
        ("   ", "something"),
        ("ok", ""),
        ("ok", "   "),
        ("x" * 101, "d"),
        (None, "d"),
    ],
)
def test_name_and_description_are_required(session, name, description):
    with pytest.raises(InvalidInput):
        add_category(session, name, description)


def test_editing_changes_description_and_active_flag(session):
    keep = make_category(session, name="keep")
    category = make_category(session, name="parks")
    edit_category(session, category.id, description="parks and trees", active=False)
    assert category.description == "parks and trees"
    assert [s.name for s in active_category_specs(session)] == [keep.name]


def test_the_last_active_category_cannot_be_deactivated(session):
    only = make_category(session, name="only")
    with pytest.raises(InvalidInput, match="at least one"):
        edit_category(session, only.id, active=False)


def test_editing_an_unknown_category_is_not_found(session):
    with pytest.raises(NotFound):
        edit_category(session, 404, description="x")
