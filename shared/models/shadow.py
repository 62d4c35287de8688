"""Shadow evaluation: a published run scored beside the model in use on live traffic.

A ``Shadow`` is one period in which a run is in shadow (started by an admin, ended by
"stop" or by deploying that run). ``active_lock`` is True exactly while it runs and NULL
after; a unique constraint on it lets the database itself refuse a second shadow.
Each submission scored while a shadow runs gets one ``ShadowPrediction``: what the model
in use said (frozen, so a later re-classification does not rewrite history) and what the
shadow said. The public never sees these rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import Base, UTCDateTime, utcnow
from shared.models.submissions import Submission

END_REASONS = ("stopped", "promoted")


class Shadow(Base):
    __tablename__ = "shadows"
    __table_args__ = (
        CheckConstraint(
            "(active_lock IS NULL) = (ended_at IS NOT NULL)", name="lock_while_running"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("fine_tuning_runs.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    active_lock: Mapped[bool | None] = mapped_column(
        Boolean, unique=True, nullable=True, default=True
    )


class ShadowPrediction(Base):
    __tablename__ = "shadow_predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shadow_id: Mapped[int] = mapped_column(ForeignKey("shadows.id", ondelete="CASCADE"), index=True)
    submission_id: Mapped[int] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), unique=True
    )
    served_category: Mapped[str | None] = mapped_column(String(100), nullable=True)
    served_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    shadow_category: Mapped[str] = mapped_column(String(100))
    shadow_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    shadow_version: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    submission: Mapped[Submission] = relationship(Submission)
