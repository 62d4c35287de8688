"""Typed access to the key/value settings table, with the documented defaults."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import DEFAULT_SETTINGS, Setting


def get_setting(session: Session, key: str) -> Any:
    if key not in DEFAULT_SETTINGS:
        raise KeyError(f"unknown setting {key!r}")
    row = session.get(Setting, key)
    return DEFAULT_SETTINGS[key] if row is None else row.value


def get_all_settings(session: Session) -> dict[str, Any]:
    values = dict(DEFAULT_SETTINGS)
    for row in session.scalars(select(Setting)):
        if row.key in values:
            values[row.key] = row.value
    return values


def set_setting(session: Session, key: str, value: Any) -> None:
    """Set a value (the caller commits)."""
    if key not in DEFAULT_SETTINGS:
        raise KeyError(f"unknown setting {key!r}")
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value
