"""classification queue: submissions stored at once and classified by a worker

Revision ID: 0007_classification_queue
Revises: 0006_shadow
Create Date: 2026-12-03 17:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007_classification_queue"
down_revision: str | None = "0006_shadow"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(
            sa.Column(
                "classification_pending", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch.create_index("ix_submissions_classification_pending", ["classification_pending"])


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_index("ix_submissions_classification_pending")
        batch.drop_column("classification_pending")
