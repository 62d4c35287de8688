"""full-text search indexes on the messages of submissions and training examples

PostgreSQL only: GIN indexes on ``to_tsvector('english', message)``, the expression
``shared.search`` queries with. SQLite searches without an index (see shared/search.py).

Revision ID: 0005_review_search
Revises: 0004_notifications
Create Date: 2026-12-03 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005_review_search"
down_revision: str | None = "0004_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_submissions_message_search": "submissions",
    "ix_training_examples_message_search": "training_examples",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table in INDEXES.items():
        op.create_index(
            name,
            table,
            [sa.text("to_tsvector('english', message)")],
            postgresql_using="gin",
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table in INDEXES.items():
        op.drop_index(name, table_name=table)
