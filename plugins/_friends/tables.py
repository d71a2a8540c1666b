"""SQL tables of the friends plugin (they grow with the audience, so SQL, not TinyDB).

friends_followups  one row per (contact, sequence): the next step and when it is due
friends_adds       the paced friend-adding queue (one row per person ever queued)
friends_members    room members seen (who is in which room, friend or not)

Times are epoch seconds (portable across SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

NAMES = ("friends_followups", "friends_adds", "friends_members")


@dataclass(frozen=True)
class Tables:
    followups: sa.Table
    adds: sa.Table
    members: sa.Table


def define(metadata: sa.MetaData) -> Tables:
    if "friends_followups" not in metadata.tables:
        sa.Table(
            "friends_followups",
            metadata,
            sa.Column("contact_id", sa.String(128), primary_key=True),
            sa.Column("sequence", sa.String(32), primary_key=True),
            sa.Column("run", sa.Integer, nullable=False, default=1),
            sa.Column("step", sa.Integer, nullable=False, default=0),  # next step to send
            sa.Column("anchor", sa.String(160), nullable=False, default=""),
            sa.Column("anchor_at", sa.Float, nullable=False),
            sa.Column("due_at", sa.Float, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),  # active | done | stopped
            sa.Column("reason", sa.String(64), nullable=False, default=""),
            sa.Column("sent", sa.Integer, nullable=False, default=0),
            sa.Column("updated_at", sa.Float, nullable=False),
            sa.Index("ix_friends_followups_due", "status", "due_at"),
        )
        sa.Table(
            "friends_adds",
            metadata,
            sa.Column("contact_id", sa.String(128), primary_key=True),
            sa.Column("seq", sa.Integer, nullable=False),
            sa.Column("source", sa.String(160), nullable=False, default=""),
            sa.Column("consent", sa.String(255), nullable=False, default=""),
            sa.Column("name", sa.String(255), nullable=False, default=""),
            sa.Column("channel", sa.String(64), nullable=False, default=""),
            sa.Column("tags", sa.JSON, nullable=False, default=list),
            # queued | requesting | requested | accepted | no_response | skipped | failed |
            # unknown | cancelled
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("reason", sa.String(64), nullable=False, default=""),
            sa.Column("job", sa.String(128), nullable=False, default=""),
            sa.Column("queued_at", sa.Float, nullable=False),
            sa.Column("requested_at", sa.Float),
            sa.Column("updated_at", sa.Float, nullable=False),
            sa.Index("ix_friends_adds_status", "status", "seq"),
            sa.Index("ix_friends_adds_requested", "requested_at"),
        )
        sa.Table(
            "friends_members",
            metadata,
            sa.Column("room_id", sa.String(128), primary_key=True),
            sa.Column("contact_id", sa.String(128), primary_key=True),
            sa.Column("name", sa.String(255), nullable=False, default=""),
            sa.Column("is_friend", sa.Boolean, nullable=False, default=False),
            sa.Column("last_seen", sa.Float, nullable=False),
            sa.Column("left_at", sa.Float),
            sa.Index("ix_friends_members_contact", "contact_id"),
        )
    t = metadata.tables
    return Tables(t["friends_followups"], t["friends_adds"], t["friends_members"])


def create(engine: sa.Engine, metadata: sa.MetaData) -> Tables:
    tables = define(metadata)
    metadata.create_all(engine, tables=[tables.followups, tables.adds, tables.members])
    return tables
