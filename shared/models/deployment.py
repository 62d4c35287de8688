"""Settings, the deployment audit trail and admin accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UTCDateTime, utcnow

DEFAULT_SETTINGS: dict[str, Any] = {
    "fine_tuning_enabled": True,
    "min_training_examples": 20,
    "auto_train": False,
    "auto_deploy": False,
    "active_model_id": None,
}


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class DeploymentEvent(Base):
    """deploy / rollback / import, who did it, from which model to which, and how it went."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(20))
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("fine_tuning_runs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    from_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    to_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    actor: Mapped[str | None] = mapped_column(String(100), nullable=True)
    outcome: Mapped[str] = mapped_column(String(20), default="ok")
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class AdminUser(Base):
    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Part of every session of this admin; bumping it ends them all (logout, new password).
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    # Flask-Login's user protocol, without importing Flask here.
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        """What the session stores: the id and the session version ("3:7"), so a session
        made before the version was bumped no longer loads (Flask-Login's alternative token)."""
        return f"{self.id}:{self.session_version or 1}"

    def end_sessions(self) -> None:
        """Revoke every session this admin has, wherever its cookie is."""
        self.session_version = (self.session_version or 1) + 1

    def set_password(self, password: str) -> None:
        from werkzeug.security import generate_password_hash

        if self.password_hash:  # a changed password ends the sessions made with the old one
            self.end_sessions()
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        from werkzeug.security import check_password_hash

        return check_password_hash(self.password_hash, password)
