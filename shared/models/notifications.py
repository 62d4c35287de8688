"""Notifications: the events that happened (an outbox), webhooks and email recipients
that subscribe to them, and every delivery attempt."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UTCDateTime, utcnow


class NotificationEvent(Base):
    """Something that happened (run.completed, model.deployed, ...), written in the same
    transaction as the change itself; a task on the `default` queue fans it out to the
    webhooks and email recipients that want it (``dispatched_at`` says it did)."""

    __tablename__ = "notification_events"
    __table_args__ = (Index("ix_notification_events_dispatched_at", "dispatched_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The body's subject: {"run": {...}, "model": {...}, ...} as it was when it happened.
    subject: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # A test event goes to this webhook or recipient only ("webhook:3", "email:2").
    only_to: Mapped[str | None] = mapped_column(String(40), nullable=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(100), nullable=True)


class EmailRecipient(Base):
    __tablename__ = "email_recipients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(100), nullable=True)


class NotificationDelivery(Base):
    """One attempt to deliver one event to one webhook or email recipient."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notification_deliveries_target", "target_kind", "target_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_kind: Mapped[str] = mapped_column(String(10))  # webhook | email
    target_id: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("notification_events.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Whether another attempt follows (False after a success or the last try).
    will_retry: Mapped[bool] = mapped_column(Boolean, default=False)
