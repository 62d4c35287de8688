"""Categories and the submissions the public sends in."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UTCDateTime, message_search_index, utcnow


class Category(Base):
    """A category is data: its description is what the zero-shot model reads."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        Index("ix_submissions_category_created_at", "category", "created_at"),
        Index("ix_submissions_confidence", "confidence"),
        Index("ix_submissions_reviewed_at", "reviewed_at"),
        message_search_index("ix_submissions_message_search"),
        Index("ix_submissions_classification_pending", "classification_pending"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message: Mapped[str] = mapped_column(Text)
    contributor_type: Mapped[str] = mapped_column(String(50))
    # The category in force: the model's prediction until an admin sets it.
    category: Mapped[str | None] = mapped_column(String(100), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # What the model said, kept apart from `category` once an admin has changed it.
    predicted_category: Mapped[str | None] = mapped_column(String(100), nullable=True)
    classification_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Stored at once, classified by a worker (a model too slow for the request path, or
    # an import handed to the worker): status "classifying" until then.
    classification_pending: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
