"""Training examples (one per corrected submission) and fine-tuning runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, validates

from shared.classifier.identity import run_version
from shared.models.base import Base, UTCDateTime, message_search_index, utcnow

ACTIVE_STATUSES = ("queued", "preparing", "training", "evaluating")
TERMINAL_STATUSES = ("completed", "failed", "cancelled", "imported")
RUN_STATUSES = ACTIVE_STATUSES + TERMINAL_STATUSES


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class TrainingExample(Base):
    __tablename__ = "training_examples"
    __table_args__ = (
        Index("ix_training_examples_corrected_category", "corrected_category"),
        Index("ix_training_examples_correction_timestamp", "correction_timestamp"),
        message_search_index("ix_training_examples_message_search"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # One example per submission: a new correction updates it.
    submission_id: Mapped[int | None] = mapped_column(
        ForeignKey("submissions.id", ondelete="SET NULL"), unique=True, nullable=True
    )
    message: Mapped[str] = mapped_column(Text)
    original_category: Mapped[str | None] = mapped_column(String(100), nullable=True)
    corrected_category: Mapped[str] = mapped_column(String(100))
    contributor_type: Mapped[str] = mapped_column(String(50))
    correction_timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confidence_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    is_correction: Mapped[bool] = mapped_column(Boolean, default=False)
    used_in_training: Mapped[bool] = mapped_column(Boolean, default=False)
    training_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("fine_tuning_runs.id", ondelete="SET NULL"), nullable=True, index=True
    )


class FineTuningRun(Base):
    """One fine-tuning run: its lifecycle, progress and results.

    `active_lock` is True exactly while the run is active and NULL otherwise; a unique
    constraint on it lets the database itself refuse a second active run.
    """

    __tablename__ = "fine_tuning_runs"
    __table_args__ = (
        CheckConstraint(f"status IN ({_sql_list(RUN_STATUSES)})", name="status_known"),
        CheckConstraint(
            f"(active_lock IS NOT NULL) = (status IN ({_sql_list(ACTIVE_STATUSES)}))",
            name="active_lock_matches_status",
        ),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_fraction"),
        Index(
            "uq_fine_tuning_runs_single_active_model",
            "is_active_model",
            unique=True,
            postgresql_where=text("is_active_model"),
            sqlite_where=text("is_active_model"),
        ),
        Index("ix_fine_tuning_runs_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    active_lock: Mapped[bool | None] = mapped_column(Boolean, unique=True, nullable=True)
    stage: Mapped[str] = mapped_column(String(200), default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    epoch: Mapped[float | None] = mapped_column(Float, nullable=True)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    celery_task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    base_model: Mapped[str] = mapped_column(String(500), default="")
    label_set: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    num_training_examples: Mapped[int] = mapped_column(Integer, default=0)
    num_validation_examples: Mapped[int] = mapped_column(Integer, default=0)
    num_test_examples: Mapped[int] = mapped_column(Integer, default=0)
    training_config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Example ids snapshotted at start and the split chosen by validate_data.
    data_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    model_path: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    is_active_model: Mapped[bool] = mapped_column(Boolean, default=False)
    improvement_over_baseline: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(100), nullable=True)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("status", "queued")
        super().__init__(**kwargs)

    @validates("status")
    def _keep_active_lock_in_step(self, _key: str, status: str) -> str:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        self.active_lock = True if status in ACTIVE_STATUSES else None
        return status

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def version(self) -> str:
        """The model version string predictions made by this run's adapter carry."""
        return run_version(self.id)


class RunLogLine(Base):
    """One log line a run's tasks wrote (data checks, epochs, evaluation, publish, the
    traceback of a failure): the run page shows them and offers them as a download."""

    __tablename__ = "run_log_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("fine_tuning_runs.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    level: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
