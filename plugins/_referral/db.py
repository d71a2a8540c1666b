"""The referral plugin's SQL tables: codes, invites (the invite tree), rewards given.

They grow with the audience, so they live in SQL beside the customer book (portable
SQLAlchemy Core, times in epoch seconds). An invitee has at most one invite row: the first
attribution wins, later ones are recorded as events only.

Invite status: pending (waiting out the stay), held (a burst waits for an operator), valid,
invalid (reason: self, loop, not_new, left, deleted), void (an operator's decision, with
who, when and why), churned (was valid; the invitee deleted us later, so it stops counting).
`review` is what an operator should look at: self, loop, burst ("" when nothing, "ok" once
an operator cleared it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

COUNTED = ("valid",)
CLEARED = "ok"  # review: an operator looked and let it stand (never flagged again)


@dataclass(frozen=True, slots=True)
class Invite:
    id: int
    invitee_id: str
    inviter_id: str
    path: str  # friend_request | room_join
    room_id: str
    at: float
    due: float
    status: str
    reason: str
    review: str
    settled_at: float | None
    void_by: str
    void_reason: str


def define_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table, sa.Table]:
    if "referral_codes" in metadata.tables:
        t = metadata.tables
        return t["referral_codes"], t["referral_invites"], t["referral_rewards"]
    codes = sa.Table(
        "referral_codes",
        metadata,
        sa.Column("contact_id", sa.String(128), primary_key=True),
        sa.Column("code", sa.String(16), nullable=False, unique=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    invites = sa.Table(
        "referral_invites",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("invitee_id", sa.String(128), nullable=False, unique=True),
        sa.Column("inviter_id", sa.String(128), nullable=False),
        sa.Column("path", sa.String(32), nullable=False),
        sa.Column("room_id", sa.String(128), nullable=False, default=""),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("due", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False, default=""),
        sa.Column("review", sa.String(16), nullable=False, default=""),
        sa.Column("settled_at", sa.Float),
        sa.Column("void_by", sa.String(128), nullable=False, default=""),
        sa.Column("void_reason", sa.String(200), nullable=False, default=""),
        sa.Index("ix_referral_invites_inviter", "inviter_id", "at"),
        sa.Index("ix_referral_invites_status", "status", "due"),
    )
    rewards = sa.Table(
        "referral_rewards",
        metadata,
        sa.Column("contact_id", sa.String(128), primary_key=True),
        sa.Column("threshold", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    return codes, invites, rewards


def _invite(row: Any) -> Invite:
    return Invite(
        int(row.id),
        row.invitee_id,
        row.inviter_id,
        row.path,
        row.room_id or "",
        float(row.at),
        float(row.due),
        row.status,
        row.reason or "",
        row.review or "",
        row.settled_at,
        row.void_by or "",
        row.void_reason or "",
    )


class ReferralDB:
    def __init__(self, engine: sa.Engine, metadata: sa.MetaData) -> None:
        self.engine = engine
        self.codes, self.invites, self.rewards = define_tables(metadata)
        metadata.create_all(engine, tables=[self.codes, self.invites, self.rewards])

    # -- codes ---------------------------------------------------------------------------
    def code_of(self, contact_id: str) -> str | None:
        c = self.codes.c
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(c.code).where(c.contact_id == contact_id)).scalar()
        return str(found) if found else None

    def owner_of(self, code: str) -> str | None:
        c = self.codes.c
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(c.contact_id).where(c.code == code.upper())).scalar()
        return str(found) if found else None

    def add_code(self, contact_id: str, code: str, at: float) -> bool:
        """False when the code is taken (the caller draws another)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(self.codes).values(contact_id=contact_id, code=code, at=at))
        except sa.exc.IntegrityError:
            return False
        return True

    # -- invites -------------------------------------------------------------------------
    def invite_of(self, invitee_id: str) -> Invite | None:
        i = self.invites.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.invites).where(i.invitee_id == invitee_id)).first()
        return _invite(row) if row is not None else None

    def add_invite(self, **values: Any) -> Invite | None:
        """None when this invitee was attributed before (the first attribution wins)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(self.invites).values(**values))
        except sa.exc.IntegrityError:
            return None
        return self.invite_of(str(values["invitee_id"]))

    def update(self, invite_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(self.invites).where(self.invites.c.id == invite_id).values(**values)
            )

    def recent_by(self, inviter_id: str, since: float) -> list[Invite]:
        i = self.invites.c
        query = sa.select(self.invites).where(i.inviter_id == inviter_id, i.at >= since)
        with self.engine.connect() as conn:
            return [_invite(r) for r in conn.execute(query)]

    def due(self, now: float, limit: int = 500) -> list[Invite]:
        i = self.invites.c
        query = (
            sa.select(self.invites)
            .where(i.status == "pending", i.due <= now)
            .order_by(i.due)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_invite(r) for r in conn.execute(query)]

    def with_status(self, statuses: Iterable[str], invitee_ids: Iterable[str]) -> list[Invite]:
        ids = list(invitee_ids)
        if not ids:
            return []
        i = self.invites.c
        query = sa.select(self.invites).where(i.status.in_(list(statuses)), i.invitee_id.in_(ids))
        with self.engine.connect() as conn:
            return [_invite(r) for r in conn.execute(query)]

    def to_review(self, limit: int = 200) -> list[Invite]:
        i = self.invites.c
        query = (
            sa.select(self.invites)
            .where(i.review.not_in(["", CLEARED]))
            .order_by(i.at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_invite(r) for r in conn.execute(query)]

    def by_inviter(self, inviter_id: str) -> list[Invite]:
        i = self.invites.c
        query = sa.select(self.invites).where(i.inviter_id == inviter_id).order_by(i.at)
        with self.engine.connect() as conn:
            return [_invite(r) for r in conn.execute(query)]

    def valid_count(self, inviter_id: str) -> int:
        i = self.invites.c
        query = sa.select(sa.func.count()).where(i.inviter_id == inviter_id, i.status.in_(COUNTED))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def leaderboard(self, since: float | None = None) -> list[tuple[str, int]]:
        """(inviter, valid invites), most first; ties by who got there first."""
        i = self.invites.c
        n = sa.func.count().label("n")
        query = (
            sa.select(i.inviter_id, n, sa.func.max(i.settled_at))
            .where(i.status.in_(COUNTED))
            .group_by(i.inviter_id)
            .order_by(n.desc(), sa.func.max(i.settled_at), i.inviter_id)
        )
        if since is not None:
            query = query.where(i.at >= since)
        with self.engine.connect() as conn:
            return [(str(cid), int(count)) for cid, count, _ in conn.execute(query)]

    def rank_of(self, inviter_id: str) -> tuple[int, int]:
        """(valid invites, rank among inviters: 1 + those with more)."""
        mine = self.valid_count(inviter_id)
        if mine == 0:
            return 0, 0
        i = self.invites.c
        per = (
            sa.select(i.inviter_id, sa.func.count().label("n"))
            .where(i.status.in_(COUNTED))
            .group_by(i.inviter_id)
            .subquery()
        )
        query = sa.select(sa.func.count()).select_from(per).where(per.c.n > mine)
        with self.engine.connect() as conn:
            ahead = int(conn.execute(query).scalar() or 0)
        return mine, ahead + 1

    # -- rewards -------------------------------------------------------------------------
    def claim_reward(self, contact_id: str, threshold: int, count: int, at: float) -> bool:
        """The durable once-per-threshold mark, written before anything is sent: False when
        it was given before (also across restarts)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(self.rewards).values(
                        contact_id=contact_id, threshold=threshold, at=at, count=count
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def rewards_of(self, contact_id: str) -> list[int]:
        r = self.rewards.c
        with self.engine.connect() as conn:
            query = sa.select(r.threshold).where(r.contact_id == contact_id)
            return sorted(int(t) for (t,) in conn.execute(query))
