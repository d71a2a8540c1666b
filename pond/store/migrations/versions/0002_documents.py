"""Documents in the database for PostgreSQL stores (pond/store/postgres.py).

On SQLite documents stay in TinyDB files of the data dir: nothing to do there.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_table(
        "documents",
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("tbl", sa.String(length=255), nullable=False),
        sa.Column("doc_id", sa.String(length=32), nullable=False),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "tbl", "doc_id"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_table("documents")
