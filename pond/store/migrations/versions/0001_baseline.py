"""Baseline: the schema of the last release before migrations (kernel and plugin tables).

A database made by that release has these tables (or a part of them: a plugin's tables
appear when it is first enabled) and no version; `python3 scripts/migrate.py` stamps it
with this revision instead of running it. An empty database gets them all here.

Frozen: never edit this file; change the schema with a new revision.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "analytics_keywords",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("room_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("word", sa.String(length=64), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "room_id", "channel", "word"),
    )
    op.create_index("ix_analytics_keywords_day", "analytics_keywords", ["day"], unique=False)
    op.create_table(
        "analytics_orders",
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_analytics_orders_at", "analytics_orders", ["at"], unique=False)
    op.create_index("ix_analytics_orders_contact", "analytics_orders", ["contact_id"], unique=False)
    op.create_table(
        "customer_tags",
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("added_at", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", "tag"),
    )
    op.create_index("ix_customer_tags_tag", "customer_tags", ["tag"], unique=False)
    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("alias", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=True),
        sa.Column("last_inbound", sa.Float(), nullable=True),
        sa.Column("last_outbound", sa.Float(), nullable=True),
        sa.Column("is_friend", sa.Boolean(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("consent", sa.JSON(), nullable=False),
        sa.Column("stage_at", sa.Float(), nullable=True),
        sa.Column("purged_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_customers_channel", "customers", ["channel"], unique=False)
    op.create_index("ix_customers_last_inbound", "customers", ["last_inbound"], unique=False)
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("plugin", sa.String(length=64), nullable=False),
        sa.Column("chat_id", sa.String(length=255), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("room_id", sa.String(length=255), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_contact_id_ts", "events", ["contact_id", "ts"], unique=False)
    op.create_index("ix_events_kind_ts", "events", ["kind", "ts"], unique=False)
    op.create_table(
        "friends_adds",
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=160), nullable=False),
        sa.Column("consent", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("queued_at", sa.Float(), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    op.create_index("ix_friends_adds_requested", "friends_adds", ["requested_at"], unique=False)
    op.create_index("ix_friends_adds_status", "friends_adds", ["status", "seq"], unique=False)
    op.create_table(
        "friends_followups",
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("sequence", sa.String(length=32), nullable=False),
        sa.Column("run", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("anchor", sa.String(length=160), nullable=False),
        sa.Column("anchor_at", sa.Float(), nullable=False),
        sa.Column("due_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", "sequence"),
    )
    op.create_index(
        "ix_friends_followups_due", "friends_followups", ["status", "due_at"], unique=False
    )
    op.create_table(
        "friends_members",
        sa.Column("room_id", sa.String(length=128), nullable=False),
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("is_friend", sa.Boolean(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("left_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("room_id", "contact_id"),
    )
    op.create_index("ix_friends_members_contact", "friends_members", ["contact_id"], unique=False)
    op.create_table(
        "groups_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("room_id", sa.String(length=128), nullable=False),
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("msg_type", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("strike_id", sa.Integer(), nullable=True),
        sa.Column("strikes", sa.Integer(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_groups_audit_at", "groups_audit", ["at"], unique=False)
    op.create_table(
        "groups_members",
        sa.Column("room_id", sa.String(length=128), nullable=False),
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("joined_at", sa.Float(), nullable=True),
        sa.Column("left_at", sa.Float(), nullable=True),
        sa.Column("invited_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("room_id", "contact_id"),
    )
    op.create_index("ix_groups_members_contact", "groups_members", ["contact_id"], unique=False)
    op.create_table(
        "groups_strikes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("room_id", sa.String(length=128), nullable=False),
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("msg_type", sa.String(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.Column("revoked_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_groups_strikes_member", "groups_strikes", ["room_id", "contact_id", "at"], unique=False
    )
    op.create_table(
        "inbox",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("handled_at", sa.Float(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_inbox_received_at", "inbox", ["received_at"], unique=False)
    op.create_index("ix_inbox_status", "inbox", ["status"], unique=False)
    op.create_table(
        "kv",
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("namespace", "key"),
    )
    op.create_table(
        "out_counters",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "kind"),
    )
    op.create_table(
        "out_jobs",
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("job"),
    )
    op.create_table(
        "out_marketing",
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    op.create_table(
        "out_optout",
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    op.create_table(
        "out_queue",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("parts_done", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_out_queue_status", "out_queue", ["status", "seq"], unique=False)
    op.create_table(
        "out_row_parts",
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("recipient", sa.String(length=128), nullable=False),
        sa.Column("parts_done", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("job", "recipient"),
    )
    op.create_table(
        "out_rows",
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("recipient", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("job", "recipient"),
    )
    op.create_index("ix_out_rows_job_status", "out_rows", ["job", "status", "seq"], unique=False)
    op.create_table(
        "referral_codes",
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "referral_invites",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invitee_id", sa.String(length=128), nullable=False),
        sa.Column("inviter_id", sa.String(length=128), nullable=False),
        sa.Column("path", sa.String(length=32), nullable=False),
        sa.Column("room_id", sa.String(length=128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("due", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("review", sa.String(length=16), nullable=False),
        sa.Column("settled_at", sa.Float(), nullable=True),
        sa.Column("void_by", sa.String(length=128), nullable=False),
        sa.Column("void_reason", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("invitee_id"),
    )
    op.create_index(
        "ix_referral_invites_inviter", "referral_invites", ["inviter_id", "at"], unique=False
    )
    op.create_index(
        "ix_referral_invites_status", "referral_invites", ["status", "due"], unique=False
    )
    op.create_table(
        "referral_rewards",
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", "threshold"),
    )
    op.create_table(
        "seen_messages",
        sa.Column("msg_id", sa.String(length=255), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("msg_id"),
    )
    op.create_index("ix_seen_messages_ts", "seen_messages", ["ts"], unique=False)


def downgrade() -> None:
    raise NotImplementedError("the baseline cannot be undone")
