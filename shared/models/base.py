"""Declarative base, naming convention and the UTC timestamp type every table uses."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Index, MetaData, func, literal_column
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always returned timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def message_search_index(name: str) -> Index:
    """The full-text index of a ``message`` column, on PostgreSQL only (``shared.search``
    queries ``to_tsvector('english', message)``; SQLite searches without an index)."""
    index = Index(
        name,
        func.to_tsvector(literal_column("'english'::regconfig"), literal_column("message")),
        postgresql_using="gin",
    )
    index.ddl_if(dialect="postgresql")
    return index
