"""Paced friend adding (批量加好友): a queue fed by an operator's CSV (with the consent
source of every row) or by the members of a room, drained by the tick one request at a
time: inside the daily window, under a daily cap, with random gaps between requests.

Each request is a one-row addition to the day's bulk job of the governor (at-most-once:
a crash never sends a request twice; the governor's own ADD_FRIEND cap applies too).
People are skipped when they are friends already, deleted the account, opted out, were
erased, are blocked, or were asked before (declined or no answer). The first throttle
signal (the governor's breaker) pauses the queue until an admin resumes it: there is no
way around the limits here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from plugins._friends import followups
from plugins._friends.requests import is_blocked
from plugins._friends.state import Ctx
from pond import (
    Action,
    ActionClass,
    ActionKind,
    JobStatus,
    RowStatus,
    capabilities,
)

log = logging.getLogger("pond.plugins.friends")

STATE = "adds:state"
QUEUED, REQUESTING, REQUESTED, ACCEPTED = "queued", "requesting", "requested", "accepted"
NO_RESPONSE, SKIPPED, FAILED, UNKNOWN, CANCELLED = (
    "no_response",
    "skipped",
    "failed",
    "unknown",
    "cancelled",
)
ASKED = (REQUESTING, REQUESTED, ACCEPTED, NO_RESPONSE, FAILED, UNKNOWN)


@dataclass(frozen=True)
class AddRow:
    contact_id: str
    name: str = ""
    consent: str = ""
    tags: tuple[str, ...] = ()
    channel: str = ""
    line: int = 0


def skip_reason(ctx: Ctx, contact_id: str) -> str:
    st = ctx.state
    customer = ctx.book.get(contact_id)
    if customer is not None and customer.stage == "churned":
        return "deleted_us"
    if customer is not None and customer.is_friend:
        return "friend"
    if ctx.ledger.is_opted_out(contact_id):
        return "opted_out"
    if ctx.rights.suppressed(contact_id) is not None:
        return "erased"
    if is_blocked(ctx, contact_id):
        return "blocked"
    a = st.tables.adds
    with st.engine.connect() as conn:
        status = conn.execute(sa.select(a.c.status).where(a.c.contact_id == contact_id)).scalar()
    if status == NO_RESPONSE:
        return "declined"
    if status in ASKED:
        return "asked_before"
    if status == QUEUED:
        return "queued"
    return ""


def queue(ctx: Ctx, rows: list[AddRow], source: str, at: float) -> dict[str, Any]:
    """Queue people to add; returns {"queued": n, "skipped": {reason: n}}."""
    st = ctx.state
    a = st.tables.adds
    skipped: dict[str, int] = {}
    queued = 0
    with st.engine.connect() as conn:
        seq = int(conn.execute(sa.select(sa.func.max(a.c.seq))).scalar() or 0)
    for row in rows:
        reason = skip_reason(ctx, row.contact_id)
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        seq += 1
        values = {
            "seq": seq,
            "source": source[:160],
            "consent": row.consent[:255],
            "name": row.name[:255],
            "channel": row.channel[:64],
            "tags": list(row.tags),
            "status": QUEUED,
            "reason": "",
            "job": "",
            "queued_at": at,
            "requested_at": None,
            "updated_at": at,
        }
        with st.engine.begin() as conn:
            updated = conn.execute(
                sa.update(a).where(a.c.contact_id == row.contact_id).values(**values)
            ).rowcount
            if not updated:
                conn.execute(sa.insert(a).values(contact_id=row.contact_id, **values))
        queued += 1
    ctx.record(
        "adds_queued",
        source=source.split(":", 1)[0],
        queued=queued,
        skipped=skipped,
    )
    return {"queued": queued, "skipped": skipped}


def room_candidates(ctx: Ctx, room_id: str, consent: str) -> list[AddRow]:
    st = ctx.state
    st.flush_members()
    m = st.tables.members
    with st.engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.c.contact_id, m.c.name)
            .where(m.c.room_id == room_id, m.c.left_at.is_(None), m.c.is_friend.is_(False))
            .order_by(m.c.last_seen)
        ).all()
    return [AddRow(cid, name=name, consent=consent) for cid, name in rows]


def room_known(ctx: Ctx, room_id: str) -> bool:
    st = ctx.state
    st.flush_members()
    m = st.tables.members
    with st.engine.connect() as conn:
        return (
            conn.execute(sa.select(m.c.contact_id).where(m.c.room_id == room_id)).first()
            is not None
        )


# -- state --------------------------------------------------------------------------------------
def get_state(ctx: Ctx) -> dict[str, Any]:
    st = ctx.state
    value = st.kv.get(STATE)
    return dict(value) if isinstance(value, dict) else {"paused": False}


def set_state(ctx: Ctx, **values: Any) -> dict[str, Any]:
    st = ctx.state
    state = {**get_state(ctx), **values}
    st.kv.set(STATE, state)
    return state


def _day_start(now: datetime) -> float:
    return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def requested_today(ctx: Ctx, now: datetime) -> int:
    st = ctx.state
    a = st.tables.adds
    with st.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(a.c.requested_at >= _day_start(now))
            ).scalar_one()
        )


def summary(ctx: Ctx, now: datetime) -> dict[str, Any]:
    st = ctx.state
    a = st.tables.adds
    with st.engine.connect() as conn:
        counts: dict[str, int] = dict(
            conn.execute(sa.select(a.c.status, sa.func.count()).group_by(a.c.status)).all()
        )
    state = get_state(ctx)
    next_at = state.get("next_at")
    return {
        "counts": {str(k): int(v) for k, v in counts.items()},
        "today": requested_today(ctx, now),
        "cap": st.config.add_daily_cap,
        "paused": bool(state.get("paused")),
        "reason": state.get("reason", ""),
        "next_at": datetime.fromtimestamp(next_at, now.tzinfo).strftime("%m-%d %H:%M")
        if next_at
        else "",
        "window": f"{st.config.add_hours.start:%H:%M}-{st.config.add_hours.end:%H:%M}",
    }


def cancel(ctx: Ctx, at: float) -> int:
    st = ctx.state
    a = st.tables.adds
    with st.engine.begin() as conn:
        return int(
            conn.execute(
                sa.update(a)
                .where(a.c.status == QUEUED)
                .values(status=CANCELLED, reason="admin", updated_at=at)
            ).rowcount
        )


def resume(ctx: Ctx) -> None:
    set_state(ctx, paused=False, reason="", alerted=False)
    for job in _add_jobs(ctx):
        if ctx.ledger.job_status(job) is JobStatus.PAUSED:
            ctx.outbox.set_job_status(job, JobStatus.ACTIVE)


def _add_jobs(ctx: Ctx) -> list[str]:
    jobs = ctx.ledger.jobs
    with ctx.sql.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(jobs.c.job).where(
                    jobs.c.job.startswith("friends.add."),
                    jobs.c.status.in_([JobStatus.ACTIVE.value, JobStatus.PAUSED.value]),
                )
            ).scalars()
        )


def pause(ctx: Ctx, reason: str) -> None:
    state = get_state(ctx)
    set_state(ctx, paused=True, reason=reason)
    for job in _add_jobs(ctx):
        if ctx.ledger.job_status(job) is JobStatus.ACTIVE:
            ctx.outbox.set_job_status(job, JobStatus.PAUSED)
    ctx.record("adds_paused", reason=reason)
    if not state.get("alerted"):
        set_state(ctx, alerted=True)
        # An operator alert: neither the breaker nor quiet hours may hold it back.
        ctx.alert("friends/adds_paused", reason=reason)


# -- the tick -----------------------------------------------------------------------------------
def _reconcile(ctx: Ctx, now: float) -> bool:
    """Read what the governor did with our requests. True when one was throttled."""
    st = ctx.state
    a = st.tables.adds
    with st.engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.c.contact_id, a.c.job).where(a.c.status == REQUESTING)
        ).all()
    throttled = False
    journals: dict[str, dict[str, Any]] = {}
    moves: list[tuple[str, str, str]] = []
    for cid, job in rows:
        if job not in journals:
            journals[job] = {r.recipient: r for r in ctx.ledger.rows_of(job)}
        row = journals[job].get(cid)
        if row is None:
            moves.append((cid, FAILED, "journal"))
        elif row.status is RowStatus.SENT:
            moves.append((cid, REQUESTED, ""))
        elif row.status is RowStatus.FAILED:
            moves.append((cid, FAILED, row.reason))
        elif row.status is RowStatus.SKIPPED:
            moves.append((cid, SKIPPED, row.reason))
        elif row.status is RowStatus.UNKNOWN:
            moves.append((cid, UNKNOWN, row.reason))
        elif row.reason == "throttled":
            throttled = True
    with st.engine.begin() as conn:
        for cid, status, reason in moves:
            conn.execute(
                sa.update(a)
                .where(a.c.contact_id == cid)
                .values(status=status, reason=reason[:64], updated_at=now)
            )
    for cid, status, reason in moves:
        ctx.record("add_" + status, contact_id=cid, reason=reason)
    return throttled


def _accepted(ctx: Ctx, now: datetime) -> int:
    """Requests we sent that were accepted: the person has talked to us since."""
    st = ctx.state
    a, c = st.tables.adds, ctx.book.customers
    ctx.book.flush()
    with st.engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.c.contact_id, a.c.consent, a.c.name, a.c.channel, a.c.tags, a.c.source)
            .select_from(a.join(c, c.c.id == a.c.contact_id))
            .where(
                a.c.status == REQUESTED,
                c.c.is_friend.is_(True),
                c.c.last_inbound > a.c.requested_at,
            )
        ).all()
    book = ctx.book
    for cid, consent, name, channel, tags, source in rows:
        before = book.get(cid)
        values: dict[str, Any] = {"is_friend": True}
        if name and before is not None and not before.name:
            values["name"] = name
        if channel and (before is None or not before.channel):
            values["channel"] = channel
        book.upsert(cid, now, **values)
        book.record_consent(cid, "add_friend", now, how="add_request", source=consent)
        ctx.record(
            "consent",
            contact_id=cid,
            purpose="add_friend",
            how="add_request",
            source=source.split(":", 1)[0],
        )
        tag_list = [t for t in (tags or []) if isinstance(t, str)]
        if channel:
            tag_list.insert(0, f"channel:{channel}")
        if tag_list:
            book.tag(cid, tag_list, now, source="friends:add")
        with st.engine.begin() as conn:
            conn.execute(
                sa.update(a)
                .where(a.c.contact_id == cid)
                .values(status=ACCEPTED, updated_at=now.timestamp())
            )
        ctx.record("add_accepted", contact_id=cid)
        followups.enrol(ctx, cid, "friend_added", now.timestamp())
    return len(rows)


def _expire(ctx: Ctx, now: float) -> int:
    st = ctx.state
    a = st.tables.adds
    cutoff = now - st.config.add_expire_days * 86400
    with st.engine.begin() as conn:
        return int(
            conn.execute(
                sa.update(a)
                .where(a.c.status == REQUESTED, a.c.requested_at < cutoff)
                .values(status=NO_RESPONSE, reason="expired", updated_at=now)
            ).rowcount
        )


def _next_queued(ctx: Ctx) -> Any:
    st = ctx.state
    a = st.tables.adds
    with st.engine.connect() as conn:
        return conn.execute(
            sa.select(a).where(a.c.status == QUEUED).order_by(a.c.seq).limit(1)
        ).first()


async def tick(ctx: Ctx) -> None:
    st = ctx.state
    now = ctx.now
    ts = now.timestamp()
    throttled = _reconcile(ctx, ts)
    _accepted(ctx, now)
    _expire(ctx, ts)
    state = get_state(ctx)
    if state.get("paused"):
        return
    if throttled or ctx.outbox.breaker_open():
        pause(ctx, "throttled")
        return
    row = _next_queued(ctx)
    if row is None:
        return
    if not ctx.can(capabilities.ADD_FRIEND):
        if st.once("no_add_friend"):
            log.warning(
                "friend adding queued, but the %s transport cannot add friends",
                ctx.transport_name,
            )
        return
    if not st.config.add_hours.contains(now.time()):
        return
    if requested_today(ctx, now) >= st.config.add_daily_cap:
        return
    if ts < float(state.get("next_at") or 0):
        return
    a = st.tables.adds
    for _ in range(50):  # skip the ones that became friends, opted out... meanwhile
        if row is None:
            return
        reason = skip_reason_queued(ctx, row.contact_id)
        if not reason:
            break
        with st.engine.begin() as conn:
            conn.execute(
                sa.update(a)
                .where(a.c.contact_id == row.contact_id)
                .values(status=SKIPPED, reason=reason, updated_at=ts)
            )
        ctx.record("add_skipped", contact_id=row.contact_id, reason=reason)
        row = _next_queued(ctx)
    else:
        return
    if row is None:
        return
    cid = row.contact_id
    job = f"friends.add.{now:%Y%m%d}"
    hello = ctx.render("friends/add_hello", chat_id=cid, contact_id=cid, name=row.name)
    action = Action(
        ActionKind.ADD_FRIEND,
        to=cid,
        cls=ActionClass.SERVICE,
        ticket=hello.text,
        key=hello.key,
        plugin="friends",
        job=job,
        contact_id=cid,
    )
    ctx.outbox.enqueue_bulk(job, [action], meta={"plugin": "friends", "kind": "add_friend"})
    if ctx.ledger.job_status(job) is JobStatus.DONE:
        ctx.outbox.set_job_status(job, JobStatus.ACTIVE)
    with st.engine.begin() as conn:
        conn.execute(
            sa.update(a)
            .where(a.c.contact_id == cid)
            .values(status=REQUESTING, job=job, requested_at=ts, updated_at=ts)
        )
    gap = ctx.rng.uniform(st.config.add_gap_min.low, st.config.add_gap_min.high) * 60
    set_state(ctx, next_at=ts + gap)
    ctx.record("add_requesting", contact_id=cid, job=job)


def skip_reason_queued(ctx: Ctx, contact_id: str) -> str:
    reason = skip_reason(ctx, contact_id)
    return "" if reason == "queued" else reason


def planned_today(ctx: Ctx, now: datetime) -> tuple[datetime, int] | None:
    """When the next request goes out today and how many more may go today, or None."""
    st = ctx.state
    state = get_state(ctx)
    if state.get("paused"):
        return None
    a = st.tables.adds
    with st.engine.connect() as conn:
        queued = int(
            conn.execute(sa.select(sa.func.count()).where(a.c.status == QUEUED)).scalar_one()
        )
    room = st.config.add_daily_cap - requested_today(ctx, now)
    window = st.config.add_hours
    end = now.replace(hour=window.end.hour, minute=window.end.minute, second=0, microsecond=0)
    if not queued or room <= 0 or now >= end:
        return None
    start = now.replace(hour=window.start.hour, minute=window.start.minute, second=0, microsecond=0)
    at = max(now, start, datetime.fromtimestamp(float(state.get("next_at") or 0), now.tzinfo))
    return (at, min(queued, room)) if at < end else None
