"""run log lines: what each run's tasks logged, for the run page and its download

Revision ID: 0003_run_logs
Revises: 0002
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003_run_logs"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_log_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["fine_tuning_runs.id"],
            name=op.f("fk_run_log_lines_run_id_fine_tuning_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_log_lines")),
    )
    with op.batch_alter_table("run_log_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_log_lines_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run_log_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_log_lines_run_id"))
    op.drop_table("run_log_lines")
