"""Account scoping, first step: daily caps and opt-outs carry the account they belong to.

`account` joins the primary key of out_counters (caps are per account) and out_optout (who
heard the 退订; honoured brand-wide). Rows of a single-account database get account ''
(the default account), so nothing changes for it. SQLite cannot alter a primary key: the
table is copied into its new shape (Alembic batch mode), rows included.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

KEYS = {"out_counters": ["account", "day", "kind"], "out_optout": ["account", "contact_id"]}


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for table, keys in KEYS.items():
        if not inspector.has_table(table):
            continue  # made later by the code, in its new shape
        column = sa.Column("account", sa.String(length=64), nullable=False, server_default="")
        if bind.dialect.name == "sqlite":
            # The copy is declared with the old key columns and the new key: SQLAlchemy
            # warns that the new key wins, which is the point.
            with (
                warnings.catch_warnings(),
                op.batch_alter_table(table, recreate="always") as batch,
            ):
                warnings.filterwarnings("ignore", "Table '_alembic_tmp_", sa.exc.SAWarning)
                batch.add_column(column)
                batch.create_primary_key(f"pk_{table}", keys)
        else:
            pkey = inspector.get_pk_constraint(table)["name"] or f"{table}_pkey"
            op.add_column(table, column)
            op.drop_constraint(pkey, table, type_="primary")
            op.create_primary_key(pkey, table, keys)


def downgrade() -> None:
    raise NotImplementedError("accounts cannot be merged back automatically")
