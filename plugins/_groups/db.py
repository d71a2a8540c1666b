"""The groups plugin's SQL tables: membership (and pending invites), strikes, audit log.

They grow with the audience, so they live in SQL next to the customer book (portable
SQLAlchemy Core; times are epoch seconds). Nothing here holds message text: the audit
records the evidence of a decision (rule, message type, message id, time), not the words."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True, slots=True)
class Strike:
    id: int
    room_id: str
    contact_id: str
    rule: str
    msg_type: str
    at: float
    dry_run: bool
    revoked_at: float | None
    revoked_by: str


def define_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table, sa.Table]:
    if "groups_members" in metadata.tables:
        t = metadata.tables
        return t["groups_members"], t["groups_strikes"], t["groups_audit"]
    members = sa.Table(
        "groups_members",
        metadata,
        sa.Column("room_id", sa.String(128), primary_key=True),
        sa.Column("contact_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, default=""),  # display only
        sa.Column("active", sa.Boolean, nullable=False, default=False),
        sa.Column("joined_at", sa.Float),  # None: a member from before we watched the room
        sa.Column("left_at", sa.Float),
        sa.Column("invited_at", sa.Float),  # an invite we sent that is not yet accepted
        sa.Index("ix_groups_members_contact", "contact_id"),
    )
    strikes = sa.Table(
        "groups_strikes",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("room_id", sa.String(128), nullable=False),
        sa.Column("contact_id", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("msg_type", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("revoked_at", sa.Float),
        sa.Column("revoked_by", sa.String(128), nullable=False, default=""),
        sa.Index("ix_groups_strikes_member", "room_id", "contact_id", "at"),
    )
    audit = sa.Table(
        "groups_audit",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("room_id", sa.String(128), nullable=False),
        sa.Column("contact_id", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False, default=""),
        sa.Column("msg_type", sa.String(32), nullable=False, default=""),
        sa.Column("message_id", sa.String(255), nullable=False, default=""),
        sa.Column("strike_id", sa.Integer),
        sa.Column("strikes", sa.Integer, nullable=False, default=0),
        sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
        sa.Column("actor", sa.String(128), nullable=False, default=""),  # admin, for undo
        sa.Column("detail", sa.String(64), nullable=False, default=""),
        sa.Index("ix_groups_audit_at", "at"),
    )
    return members, strikes, audit


class GroupsDB:
    def __init__(self, engine: sa.Engine, metadata: sa.MetaData) -> None:
        self.engine = engine
        self.members, self.strikes_table, self.audit_table = define_tables(metadata)
        metadata.create_all(engine, tables=[self.members, self.strikes_table, self.audit_table])

    # -- membership ----------------------------------------------------------------------
    def active(self) -> dict[str, dict[str, float | None]]:
        """room id -> {member id -> joined_at} for every member we know is in a room."""
        m = self.members
        rows: dict[str, dict[str, float | None]] = {}
        with self.engine.connect() as conn:
            query = sa.select(m.c.room_id, m.c.contact_id, m.c.joined_at).where(m.c.active)
            for room_id, contact_id, joined_at in conn.execute(query):
                rows.setdefault(room_id, {})[contact_id] = joined_at
        return rows

    def _upsert(self, room_id: str, contact_id: str, **values: Any) -> None:
        m = self.members
        key = (m.c.room_id == room_id) & (m.c.contact_id == contact_id)
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(m.c.room_id).where(key)).first()
            if found is None:
                conn.execute(sa.insert(m).values(room_id=room_id, contact_id=contact_id, **values))
            else:
                conn.execute(sa.update(m).where(key).values(**values))

    def joined(self, room_id: str, contact_id: str, name: str, at: float) -> bool:
        """Record a join; True when we had invited this contact to this room."""
        m = self.members
        key = (m.c.room_id == room_id) & (m.c.contact_id == contact_id)
        with self.engine.connect() as conn:
            invited = conn.execute(sa.select(m.c.invited_at).where(key)).scalar()
        self._upsert(
            room_id, contact_id, name=name, active=True, joined_at=at, left_at=None, invited_at=None
        )
        with self.engine.begin() as conn:  # in one room now: other invites hold no seat
            conn.execute(
                sa.update(m)
                .where(m.c.contact_id == contact_id, m.c.invited_at.is_not(None))
                .values(invited_at=None)
            )
        return invited is not None

    def seen(self, room_id: str, contact_id: str, name: str) -> None:
        """Someone spoke in the room, so they are in it (since when, we do not know)."""
        self._upsert(room_id, contact_id, name=name, active=True)

    def left(self, room_id: str, contact_id: str, at: float) -> None:
        self._upsert(room_id, contact_id, active=False, left_at=at, invited_at=None)

    def name(self, contact_id: str) -> str:
        m = self.members
        with self.engine.connect() as conn:
            query = sa.select(m.c.name).where(m.c.contact_id == contact_id).limit(1)
            return str(conn.execute(query).scalar() or "")

    # -- invites -------------------------------------------------------------------------
    def invited(self, room_id: str, contact_id: str, name: str, at: float) -> None:
        self._upsert(room_id, contact_id, name=name, invited_at=at)

    def clear_invite(self, room_id: str, contact_id: str) -> None:
        m = self.members
        key = (m.c.room_id == room_id) & (m.c.contact_id == contact_id)
        with self.engine.begin() as conn:
            conn.execute(sa.update(m).where(key).values(invited_at=None))

    def pending_invite(self, contact_id: str, rooms: Iterable[str], since: float) -> str | None:
        """A room this contact was invited to after `since` and has not joined yet."""
        m = self.members
        query = (
            sa.select(m.c.room_id)
            .where(m.c.contact_id == contact_id, m.c.room_id.in_(list(rooms)))
            .where(m.c.invited_at >= since, sa.not_(m.c.active))
            .order_by(m.c.invited_at.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return str(found) if found is not None else None

    def pending_counts(self, since: float) -> dict[str, int]:
        """Invites per room sent after `since` and not yet accepted: seats they will take."""
        m = self.members
        query = (
            sa.select(m.c.room_id, sa.func.count())
            .where(m.c.invited_at >= since, sa.not_(m.c.active))
            .group_by(m.c.room_id)
        )
        with self.engine.connect() as conn:
            return {str(room): int(n) for room, n in conn.execute(query)}

    # -- strikes -------------------------------------------------------------------------
    def add_strike(
        self, room_id: str, contact_id: str, rule: str, msg_type: str, at: float, dry_run: bool
    ) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.insert(self.strikes_table).values(
                    room_id=room_id,
                    contact_id=contact_id,
                    rule=rule,
                    msg_type=msg_type,
                    at=at,
                    dry_run=dry_run,
                    revoked_by="",
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def count_strikes(self, room_id: str, contact_id: str, since: float, dry_run: bool) -> int:
        """Active strikes: not undone, not expired, and of the same mode (a dry run's strikes
        never count toward real removals, and real ones not toward a dry run's)."""
        s = self.strikes_table
        query = sa.select(sa.func.count()).where(
            s.c.room_id == room_id,
            s.c.contact_id == contact_id,
            s.c.at >= since,
            s.c.dry_run == dry_run,
            s.c.revoked_at.is_(None),
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def strike(self, strike_id: int) -> Strike | None:
        s = self.strikes_table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s).where(s.c.id == strike_id)).first()
        return _strike(row) if row is not None else None

    def list_strikes(
        self,
        *,
        since: float,
        room_id: str | None = None,
        contact_id: str | None = None,
        active_only: bool = True,
        limit: int = 20,
    ) -> list[Strike]:
        s = self.strikes_table
        query = sa.select(s).where(s.c.at >= since)
        if room_id is not None:
            query = query.where(s.c.room_id == room_id)
        if contact_id is not None:
            query = query.where(s.c.contact_id == contact_id)
        if active_only:
            query = query.where(s.c.revoked_at.is_(None))
        query = query.order_by(s.c.at.desc(), s.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_strike(row) for row in conn.execute(query)]

    def revoke(self, strike_id: int, by: str, at: float) -> bool:
        s = self.strikes_table
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(s)
                .where(s.c.id == strike_id, s.c.revoked_at.is_(None))
                .values(revoked_at=at, revoked_by=by)
            )
            return bool(result.rowcount)

    # -- audit ---------------------------------------------------------------------------
    def audit(self, **row: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.insert(self.audit_table).values(**row))

    def audit_rows(self, since: float = 0.0, room_id: str | None = None) -> list[dict[str, Any]]:
        a = self.audit_table
        query = sa.select(a).where(a.c.at >= since)
        if room_id is not None:
            query = query.where(a.c.room_id == room_id)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query.order_by(a.c.id)).mappings()]

    def recent_audit(
        self, limit: int, room_id: str | None = None, contact_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The latest audit rows, newest first, for one room or one member if given."""
        a = self.audit_table
        query = sa.select(a)
        if room_id is not None:
            query = query.where(a.c.room_id == room_id)
        if contact_id is not None:
            query = query.where(a.c.contact_id == contact_id)
        query = query.order_by(a.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]


def _strike(row: sa.Row[Any]) -> Strike:
    return Strike(
        id=int(row.id),
        room_id=row.room_id,
        contact_id=row.contact_id,
        rule=row.rule,
        msg_type=row.msg_type,
        at=float(row.at),
        dry_run=bool(row.dry_run),
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by or "",
    )
