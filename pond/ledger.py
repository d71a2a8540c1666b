"""The governor's durable state, in SQL next to the customer data: daily counters, opt-outs,
marketing frequency, the breaker, and the at-most-once journal of bulk deliveries.

Every write here commits before the caller acts: a restart or a crash loop can never reset
a cap or resend a bulk row. Times are epoch seconds (portable across SQLite/PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pond.actions import Action, ActionClass, ActionKind, Media, MediaKind
from pond.store.fast import Prepared


class RowStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"  # was "sending" when the process died: never re-sent silently
    SKIPPED = "skipped"
    HELD = "held"  # paused by the operator: not sendable until moved back to pending


class JobStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


def define_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    if "out_counters" in metadata.tables:
        return dict(metadata.tables)
    sa.Table(
        "out_counters",
        metadata,
        # Caps are per account ('' = the single-account default); see migration 0003.
        sa.Column("account", sa.String(64), primary_key=True, server_default=""),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    sa.Table(
        "out_optout",
        metadata,
        # Which account heard the 退订; it is honoured brand-wide (every account).
        sa.Column("account", sa.String(64), primary_key=True, server_default=""),
        sa.Column("contact_id", sa.String(128), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
    )
    sa.Table(
        "out_marketing",
        metadata,
        sa.Column("contact_id", sa.String(128), primary_key=True),
        sa.Column("last_at", sa.Float, nullable=False),
    )
    sa.Table(
        "out_jobs",
        metadata,
        sa.Column("job", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("meta", sa.JSON, nullable=False),
    )
    sa.Table(
        "out_rows",
        metadata,
        sa.Column("job", sa.String(128), primary_key=True),
        sa.Column("recipient", sa.String(128), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False, default=""),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Index("ix_out_rows_job_status", "job", "status", "seq"),
    )
    return dict(metadata.tables)


def action_to_json(action: Action) -> str:
    data: dict[str, Any] = {
        "kind": action.kind.value,
        "to": action.to,
        "cls": action.cls.value,
        "text": action.text,
        "key": action.key,
        "mentions": list(action.mentions),
        "member_id": action.member_id,
        "ticket": action.ticket,
        "plugin": action.plugin,
        "job": action.job,
        "contact_id": action.contact_id,
    }
    if action.media:
        m = action.media
        data["media"] = {
            "kind": m.kind.value,
            "path": m.path,
            "url": m.url,
            "title": m.title,
            "description": m.description,
        }
    return json.dumps(data, ensure_ascii=False)


def action_from_json(text: str) -> Action:
    data = json.loads(text)
    media = data.pop("media", None)
    return Action(
        kind=ActionKind(data.pop("kind")),
        cls=ActionClass(data.pop("cls")),
        mentions=tuple(data.pop("mentions")),
        media=Media(kind=MediaKind(media.pop("kind")), **media) if media else None,
        **data,
    )


@dataclass(frozen=True, slots=True)
class BulkRow:
    job: str
    recipient: str
    seq: int
    status: RowStatus
    reason: str
    action: Action
    updated_at: float = 0.0  # epoch seconds of the last status change (the send, for "sent")


class Ledger:
    def __init__(self, engine: sa.Engine, metadata: sa.MetaData, account: str = "") -> None:
        self.engine = engine
        self.account = account
        t = define_tables(metadata)
        metadata.create_all(engine, tables=[t[name] for name in _TABLES])
        self.counters = t["out_counters"]
        self.optout = t["out_optout"]
        self.marketing = t["out_marketing"]
        self.jobs = t["out_jobs"]
        self.rows = t["out_rows"]
        c = self.counters.c
        at_day_kind = (
            c.account == account,
            c.day == sa.bindparam("b_day"),
            c.kind == sa.bindparam("b_kind"),
        )
        # Every reply counts against the daily cap in its "sending" transaction: prepared.
        self._q_increment = Prepared(
            engine,
            sa.update(self.counters)
            .where(*at_day_kind, c.n < sa.bindparam("cap"))
            .values(n=c.n + 1),
        )
        self._q_count = Prepared(engine, sa.select(c.n).where(*at_day_kind))
        self._active: list[str] | None = None  # cache: read on every outbox step

    # -- daily caps ------------------------------------------------------------------
    def count(self, day: str, kind: str) -> int:
        with self.engine.connect() as conn:
            n = conn.execute(
                sa.select(self.counters.c.n).where(
                    self.counters.c.account == self.account,
                    self.counters.c.day == day,
                    self.counters.c.kind == kind,
                )
            ).scalar()
        return int(n or 0)

    def counts(self, day: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self.counters.c.kind, self.counters.c.n).where(
                    self.counters.c.account == self.account, self.counters.c.day == day
                )
            ).all()
        return {kind: int(n) for kind, n in rows}

    def reserve(self, day: str, limits: dict[str, int]) -> str | None:
        """Count one action against every (kind -> cap) in `limits`, committed before the
        action is performed. Returns the first kind already at its cap (nothing counted).

        Each increment is one conditional UPDATE (n < cap), so even two processes sharing
        a database cannot both take the last slot."""
        for _attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    for kind, cap in limits.items():
                        if not self._increment(conn, day, kind, cap):
                            conn.rollback()
                            return kind
                return None
            except IntegrityError:
                continue  # another writer inserted the day's first row: count again
        raise RuntimeError(f"could not reserve {sorted(limits)} for {day}")

    def reserve_in(self, conn: sa.Connection, day: str, limits: dict[str, int]) -> str | None:
        """`reserve` inside the caller's transaction (the outbox's group commit): a capped
        action counts nothing (what this call counted already is given back)."""
        done: list[str] = []
        for kind, cap in limits.items():
            if not self._increment(conn, day, kind, cap):
                # No savepoints here (pysqlite): undo this call's own increments.
                c = self.counters.c
                for back in done:
                    conn.execute(
                        sa.update(self.counters)
                        .where(c.account == self.account, c.day == day, c.kind == back, c.n > 0)
                        .values(n=c.n - 1)
                    )
                return kind
            done.append(kind)
        return None

    def _increment(self, conn: sa.Connection, day: str, kind: str, cap: int) -> bool:
        params = {"b_day": day, "b_kind": kind, "cap": cap}
        if self._q_increment.execute(conn, [params]):
            return True
        exists = self._q_count.first(conn, params)
        if exists is not None or cap <= 0:
            return False  # at the cap
        conn.execute(sa.insert(self.counters).values(account=self.account, day=day, kind=kind, n=1))
        return True

    def release(self, day: str, kinds: Iterable[str]) -> None:
        """Give back a reservation for an action that certainly did not happen (refused as
        throttled, or never attempted while offline), so retries cannot burn the day's cap."""
        c = self.counters.c
        with self.engine.begin() as conn:
            for kind in kinds:
                conn.execute(
                    sa.update(self.counters)
                    .where(c.account == self.account, c.day == day, c.kind == kind, c.n > 0)
                    .values(n=c.n - 1)
                )

    # -- opt-out and marketing frequency ----------------------------------------------
    def set_opt_out(self, contact_id: str, at: float, source: str) -> bool:
        """True when this is a new opt-out (in no account before: it is brand-wide)."""
        try:
            with self.engine.begin() as conn:
                if self._opted_out_in(conn, contact_id):
                    return False
                conn.execute(
                    sa.insert(self.optout).values(
                        account=self.account, contact_id=contact_id, at=at, source=source
                    )
                )
        except IntegrityError:
            return False
        return True

    def clear_opt_out(self, contact_id: str) -> bool:
        with self.engine.begin() as conn:
            deleted = conn.execute(
                sa.delete(self.optout).where(self.optout.c.contact_id == contact_id)
            ).rowcount
        return bool(deleted)

    def is_opted_out(self, contact_id: str) -> bool:
        with self.engine.connect() as conn:
            return self._opted_out_in(conn, contact_id)

    def _opted_out_in(self, conn: sa.Connection, contact_id: str) -> bool:
        found = conn.execute(
            sa.select(self.optout.c.at).where(self.optout.c.contact_id == contact_id).limit(1)
        ).first()
        return found is not None

    def opted_out(self) -> list[tuple[str, float]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(self.optout.c.contact_id, self.optout.c.at)).all()
        return [(str(c), float(a)) for c, a in rows]

    def last_marketing(self, contact_id: str) -> float | None:
        with self.engine.connect() as conn:
            last = conn.execute(
                sa.select(self.marketing.c.last_at).where(self.marketing.c.contact_id == contact_id)
            ).scalar()
        return float(last) if last is not None else None

    def note_marketing(self, contact_id: str, at: float) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(self.marketing)
                .where(self.marketing.c.contact_id == contact_id)
                .values(last_at=at)
            ).rowcount
            if not updated:
                conn.execute(sa.insert(self.marketing).values(contact_id=contact_id, last_at=at))

    # -- bulk jobs (at-most-once) --------------------------------------------------------
    def create_job(self, job: str, actions: Sequence[Action], at: float, meta: Any = None) -> int:
        """Journal one row per recipient as pending. Re-creating a job adds only new
        recipients, so a replayed schedule never duplicates a row. Returns rows added."""
        self._active = None
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(self.jobs.c.job).where(self.jobs.c.job == job)).first()
            if not exists:
                conn.execute(
                    sa.insert(self.jobs).values(
                        job=job, status=JobStatus.ACTIVE.value, created_at=at, meta=meta or {}
                    )
                )
            have = set(
                conn.execute(sa.select(self.rows.c.recipient).where(self.rows.c.job == job))
                .scalars()
                .all()
            )
            start = len(have)
            new_rows: list[dict[str, Any]] = []
            for action in actions:
                if action.to in have:
                    continue
                have.add(action.to)
                new_rows.append(
                    {
                        "job": job,
                        "recipient": action.to,
                        "seq": start + len(new_rows),
                        "status": RowStatus.PENDING.value,
                        "reason": "",
                        "updated_at": at,
                        "action": action_to_json(action),
                    }
                )
            if new_rows:
                conn.execute(sa.insert(self.rows), new_rows)
        return len(new_rows)

    def job_status(self, job: str) -> JobStatus | None:
        with self.engine.connect() as conn:
            status = conn.execute(
                sa.select(self.jobs.c.status).where(self.jobs.c.job == job)
            ).scalar()
        return JobStatus(status) if status else None

    def set_job_status(self, job: str, status: JobStatus) -> None:
        self._active = None
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(self.jobs).where(self.jobs.c.job == job).values(status=status.value)
            )

    def active_jobs(self) -> list[str]:
        """Active jobs, oldest first. Cached: only this ledger changes job statuses (one
        writer per data dir), and every change goes through create_job/set_job_status."""
        if self._active is None:
            with self.engine.connect() as conn:
                jobs = conn.execute(
                    sa.select(self.jobs.c.job)
                    .where(self.jobs.c.status == JobStatus.ACTIVE.value)
                    .order_by(self.jobs.c.created_at, self.jobs.c.job)
                ).scalars()
                self._active = [str(j) for j in jobs]
        return list(self._active)

    def jobs_since(self, at: float) -> list[tuple[str, float, Any]]:
        """(job, created_at, meta) of the jobs created at or after `at`, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self.jobs.c.job, self.jobs.c.created_at, self.jobs.c.meta)
                .where(self.jobs.c.created_at >= at)
                .order_by(self.jobs.c.created_at.desc())
            ).all()
        return [(str(r.job), float(r.created_at), r.meta) for r in rows]

    def sent_at(self, job: str, recipient: str) -> float | None:
        """When `recipient`'s row of `job` was sent (epoch s), or None if it was not."""
        with self.engine.connect() as conn:
            at = conn.execute(
                sa.select(self.rows.c.updated_at).where(
                    self.rows.c.job == job,
                    self.rows.c.recipient == recipient,
                    self.rows.c.status == RowStatus.SENT.value,
                )
            ).scalar()
        return float(at) if at is not None else None

    def pending(self, job: str, limit: int = 50) -> list[BulkRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self.rows)
                .where(self.rows.c.job == job, self.rows.c.status == RowStatus.PENDING.value)
                .order_by(self.rows.c.seq)
                .limit(limit)
            ).all()
        return [self._row(r) for r in rows]

    def rows_of(self, job: str, status: RowStatus | None = None) -> list[BulkRow]:
        query = sa.select(self.rows).where(self.rows.c.job == job).order_by(self.rows.c.seq)
        if status is not None:
            query = query.where(self.rows.c.status == status.value)
        with self.engine.connect() as conn:
            return [self._row(r) for r in conn.execute(query).all()]

    def mark(
        self,
        job: str,
        recipient: str,
        status: RowStatus,
        at: float,
        reason: str = "",
        expect: RowStatus | None = None,
    ) -> bool:
        """Move a row to `status`; with `expect`, only from that status (compare-and-set).
        Committed on return: the "sending" mark is durable before the transport is called."""
        with self.engine.begin() as conn:
            return self.mark_in(conn, job, recipient, status, at, reason, expect)

    def mark_in(
        self,
        conn: sa.Connection,
        job: str,
        recipient: str,
        status: RowStatus,
        at: float,
        reason: str = "",
        expect: RowStatus | None = None,
    ) -> bool:
        """`mark` inside the caller's transaction."""
        query = sa.update(self.rows).where(
            self.rows.c.job == job, self.rows.c.recipient == recipient
        )
        if expect is not None:
            query = query.where(self.rows.c.status == expect.value)
        changed = conn.execute(
            query.values(status=status.value, reason=reason, updated_at=at)
        ).rowcount
        return bool(changed)

    def recover(self, at: float) -> list[BulkRow]:
        """After a crash: rows left "sending" may or may not have gone out. They become
        "unknown" for the operator to review, and are never re-sent automatically."""
        with self.engine.begin() as conn:
            stuck = conn.execute(
                sa.select(self.rows).where(self.rows.c.status == RowStatus.SENDING.value)
            ).all()
            if stuck:
                conn.execute(
                    sa.update(self.rows)
                    .where(self.rows.c.status == RowStatus.SENDING.value)
                    .values(status=RowStatus.UNKNOWN.value, reason="crash", updated_at=at)
                )
        return [self._row(r) for r in stuck]

    def summary(self, job: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self.rows.c.status, sa.func.count())
                .where(self.rows.c.job == job)
                .group_by(self.rows.c.status)
            ).all()
        return {str(status): int(n) for status, n in rows}

    def skipped_reasons(self, job: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self.rows.c.reason, sa.func.count())
                .where(self.rows.c.job == job, self.rows.c.status == RowStatus.SKIPPED.value)
                .group_by(self.rows.c.reason)
            ).all()
        return {str(reason): int(n) for reason, n in rows}

    @staticmethod
    def _row(r: sa.Row[Any]) -> BulkRow:
        return BulkRow(
            job=r.job,
            recipient=r.recipient,
            seq=r.seq,
            status=RowStatus(r.status),
            reason=r.reason,
            action=action_from_json(r.action),
            updated_at=float(r.updated_at),
        )


_TABLES: Iterable[str] = ("out_counters", "out_optout", "out_marketing", "out_jobs", "out_rows")
