"""shadow evaluation: the run in shadow (one at a time) and its prediction per submission

Revision ID: 0006_shadow
Revises: 0005_review_search
Create Date: 2026-12-03 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006_shadow"
down_revision: str | None = "0005_review_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shadows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(length=100), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=100), nullable=True),
        sa.Column("end_reason", sa.String(length=20), nullable=True),
        sa.Column("active_lock", sa.Boolean(), nullable=True),
        sa.CheckConstraint(
            "(active_lock IS NULL) = (ended_at IS NOT NULL)",
            name=op.f("ck_shadows_lock_while_running"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["fine_tuning_runs.id"],
            name=op.f("fk_shadows_run_id_fine_tuning_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadows")),
        sa.UniqueConstraint("active_lock", name=op.f("uq_shadows_active_lock")),
    )
    with op.batch_alter_table("shadows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shadows_run_id"), ["run_id"], unique=False)
    op.create_table(
        "shadow_predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shadow_id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("served_category", sa.String(length=100), nullable=True),
        sa.Column("served_version", sa.String(length=100), nullable=True),
        sa.Column("shadow_category", sa.String(length=100), nullable=False),
        sa.Column("shadow_confidence", sa.Float(), nullable=True),
        sa.Column("shadow_version", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shadow_id"],
            ["shadows.id"],
            name=op.f("fk_shadow_predictions_shadow_id_shadows"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_shadow_predictions_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_predictions")),
        sa.UniqueConstraint("submission_id", name=op.f("uq_shadow_predictions_submission_id")),
    )
    with op.batch_alter_table("shadow_predictions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_shadow_predictions_shadow_id"), ["shadow_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("shadow_predictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shadow_predictions_shadow_id"))
    op.drop_table("shadow_predictions")
    with op.batch_alter_table("shadows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shadows_run_id"))
    op.drop_table("shadows")
