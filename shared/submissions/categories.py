"""Categories are data: admins list, add and edit them; the model reads their descriptions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.classifier.base import CategorySpec
from shared.errors import Conflict, InvalidInput, NotFound
from shared.inputs import clean_text, has_visible_character
from shared.models import Category

MAX_NAME_LENGTH = 100
MAX_DESCRIPTION_LENGTH = 1000


def category_to_dict(category: Category) -> dict[str, Any]:
    return {
        "id": category.id,
        "name": category.name,
        "description": category.description,
        "active": category.active,
    }


def list_categories(session: Session, *, active_only: bool = False) -> list[Category]:
    """Categories by name; with ``active_only`` just the ones the model sorts into."""
    query = select(Category).order_by(Category.name)
    if active_only:
        query = query.where(Category.active.is_(True))
    return list(session.scalars(query))


def active_category_specs(session: Session) -> list[CategorySpec]:
    """The active categories as the classifier sees them (name and description)."""
    return [
        CategorySpec(category.name, category.description)
        for category in list_categories(session, active_only=True)
    ]


def _clean_description(description: object) -> str:
    if not isinstance(description, str) or not has_visible_character(description):
        raise InvalidInput(
            "description is required: it is what the zero-shot model reads to recognise "
            "the category"
        )
    return clean_text(description, "description", MAX_DESCRIPTION_LENGTH)


def add_category(session: Session, name: object, description: object) -> Category:
    """Add an active category. Empty fields → InvalidInput; a taken name → Conflict."""
    if not isinstance(name, str) or not has_visible_character(name):
        raise InvalidInput("name is required")
    name = " ".join(clean_text(name, "name", MAX_NAME_LENGTH).split())
    description = _clean_description(description)
    taken = session.scalar(select(Category.id).where(func.lower(Category.name) == name.lower()))
    if taken is not None:
        raise Conflict(f"a category named {name!r} exists already")
    category = Category(name=name, description=description, active=True)
    session.add(category)
    session.flush()
    return category


def edit_category(
    session: Session,
    category_id: int,
    *,
    description: object = None,
    active: object = None,
) -> Category:
    """Change a category's description and/or active flag. Names never change: submissions
    and training examples refer to categories by name."""
    category = session.get(Category, category_id)
    if category is None:
        raise NotFound(f"category {category_id} does not exist")
    if description is not None:
        category.description = _clean_description(description)
    if active is not None:
        if not isinstance(active, bool):
            raise InvalidInput("active must be true or false")
        if not active and category.active:
            others = session.scalar(
                select(func.count())
                .select_from(Category)
                .where(Category.active.is_(True), Category.id != category.id)
            )
            if not others:
                raise InvalidInput("at least one category must stay active")
        category.active = active
    session.flush()
    return category


def require_active_category(session: Session, name: object) -> Category:
    """The active category called ``name``, or InvalidInput naming the choices."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("category is required")
    category = session.scalar(select(Category).where(Category.name == name.strip()))
    if category is None or not category.active:
        choices = ", ".join(c.name for c in list_categories(session, active_only=True))
        raise InvalidInput(f"unknown category {name!r}; choose one of: {choices}")
    return category
