"""Follow-up sequences (SOP): enrolment at an anchor event, due steps drained by the tick.

Each step goes out as a row of a bulk job of the governor (at-most-once journal, class
MARKETING: quiet hours, opt-out, frequency and caps apply there, not here). The job id is
derived from (sequence, run, step, due date), and rows are journaled BEFORE the enrolment
advances: a crash in between re-journals the same rows, which the ledger deduplicates, so a
restart neither skips nor repeats a step.

Stops (recorded with a reason): opt-out, churned / no longer a friend, handed to a human
(paused chat, takeover or a *.handoff event since the anchor), a reply since the anchor when
exit_on_reply, the sequence's exit segment, the sequence removed from the file.
A step whose condition does not hold is skipped; a step that would fall inside the
marketing frequency window is postponed to when the window opens instead of being lost."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa

from plugins._friends.rules import Sequence, Step
from plugins._friends.state import Ctx
from pond import ALL_CHATS, ActionClass, Customer, JobStatus, PersonaError, facts_of

log = logging.getLogger("pond.plugins.friends")

ACTIVE, DONE, STOPPED = "active", "done", "stopped"


def due_time(step: Step, anchor_at: float, tz: tzinfo) -> float:
    if step.at is None:
        return anchor_at + step.after_s
    day = datetime.fromtimestamp(anchor_at, tz).date() + timedelta(days=int(step.after_s // 86400))
    due = datetime.combine(day, step.at, tzinfo=tz).timestamp()
    return max(due, anchor_at)


def enrol(ctx: Ctx, contact_id: str, anchor: str, at: float) -> list[str]:
    """Start every sequence whose anchor this is. Returns the sequences started."""
    st = ctx.state
    sequences = [s for s in st.data.followups.sequences.values() if s.fits(anchor)]
    if not sequences:
        return []
    f = st.tables.followups
    started = []
    facts: frozenset[str] | None = None
    for seq in sequences:
        if seq.segment is not None:
            facts = facts if facts is not None else ctx.book.facts(contact_id)
            if not seq.segment.matches(facts):
                continue
        with st.engine.begin() as conn:
            row = conn.execute(
                sa.select(f.c.status, f.c.run).where(
                    f.c.contact_id == contact_id, f.c.sequence == seq.id
                )
            ).first()
            if row is not None and (row.status == ACTIVE or not seq.reenter):
                continue
            run = row.run + 1 if row is not None else 1
            values = {
                "run": run,
                "step": 0,
                "anchor": anchor[:160],
                "anchor_at": at,
                "due_at": due_time(seq.steps[0], at, ctx.clock.tz),
                "status": ACTIVE,
                "reason": "",
                "sent": 0,
                "updated_at": at,
            }
            if row is None:
                conn.execute(sa.insert(f).values(contact_id=contact_id, sequence=seq.id, **values))
            else:
                conn.execute(
                    sa.update(f)
                    .where(f.c.contact_id == contact_id, f.c.sequence == seq.id)
                    .values(**values)
                )
        ctx.record(
            "followup_enrolled",
            contact_id=contact_id,
            sequence=seq.id,
            anchor=anchor.split(":", 1)[0],
            run=run,
        )
        started.append(seq.id)
    return started


def stop(ctx: Ctx, contact_id: str, reason: str, sequence: str | None = None) -> int:
    st = ctx.state
    f = st.tables.followups
    query = sa.update(f).where(f.c.contact_id == contact_id, f.c.status == ACTIVE)
    if sequence is not None:
        query = query.where(f.c.sequence == sequence)
    with st.engine.begin() as conn:
        n = int(
            conn.execute(
                query.values(status=STOPPED, reason=reason, updated_at=ctx.now.timestamp())
            ).rowcount
        )
    if n:
        ctx.record(
            "followup_stopped",
            contact_id=contact_id,
            reason=reason,
            sequences=n,
        )
    return n


def of_contact(ctx: Ctx, contact_id: str) -> list[dict[str, Any]]:
    st = ctx.state
    f = st.tables.followups
    with st.engine.connect() as conn:
        rows = conn.execute(
            sa.select(f).where(f.c.contact_id == contact_id).order_by(f.c.sequence)
        ).mappings()
        return [dict(r) for r in rows]


def _handed_off(ctx: Ctx, contact_id: str, since: float) -> bool:
    paused = ctx.pauses.active().get(contact_id)
    if paused is not None:
        return True
    moment = datetime.fromtimestamp(since, ctx.clock.tz)
    if ctx.sql.events(kind="chat.takeover", chat_id=contact_id, since=moment, limit=1):
        return True
    events = ctx.sql.events_table
    with ctx.sql.engine.connect() as conn:
        found = conn.execute(
            sa.select(events.c.id)
            .where(
                events.c.contact_id == contact_id,
                events.c.ts >= moment,
                events.c.kind.endswith(".handoff"),
            )
            .limit(1)
        ).first()
    return found is not None


def _stop_reason(ctx: Ctx, seq: Sequence, row: Any, customer: Customer) -> str:
    cid = customer.id
    if ctx.ledger.is_opted_out(cid):
        return "opt_out"
    if not customer.is_friend or customer.stage == "churned":
        return "churned"
    if (
        seq.exit_on_reply
        and customer.last_inbound is not None
        and (customer.last_inbound > row.anchor_at)
    ):
        return "replied"
    if seq.exit is not None and seq.exit.matches(facts_of(customer.tags, customer, False)):
        return "exit"
    if _handed_off(ctx, cid, row.anchor_at):
        return "handoff"
    return ""


def job_id(seq: str, run: int, step: int, due_at: float, tz: tzinfo) -> str:
    day = datetime.fromtimestamp(due_at, tz).strftime("%Y%m%d")
    return f"friends.fu.{seq}.r{run}.s{step}.{day}"


def drain(ctx: Ctx, limit: int = 200) -> dict[str, int]:
    """Journal the due steps as bulk rows, then advance the enrolments."""
    st = ctx.state
    counts = {"sent": 0, "skipped": 0, "stopped": 0, "postponed": 0, "done": 0}
    if ctx.pauses.reason(ALL_CHATS) is not None:
        return counts  # the operator paused everything: hold, do not stop
    now = ctx.now.timestamp()
    tz = ctx.clock.tz
    f = st.tables.followups
    with st.engine.connect() as conn:
        rows = conn.execute(
            sa.select(f)
            .where(f.c.status == ACTIVE, f.c.due_at <= now)
            .order_by(f.c.due_at)
            .limit(limit)
        ).all()
    if not rows:
        return counts
    book = ctx.book
    interval = ctx.settings.outbox.marketing_min_interval_h * 3600
    sequences = st.data.followups.sequences
    jobs: dict[str, list[Any]] = {}
    updates: list[tuple[str, str, dict[str, Any]]] = []
    sent: list[tuple[str, str, int]] = []

    def finish(row: Any, status: str, reason: str) -> None:
        updates.append(
            (row.contact_id, row.sequence, {"status": status, "reason": reason, "updated_at": now})
        )
        counts["stopped" if status == STOPPED else "done"] += 1

    def advance(row: Any, seq: Sequence, delivered: bool) -> None:
        nxt = row.step + 1
        values: dict[str, Any] = {"step": nxt, "updated_at": now, "sent": row.sent + delivered}
        if nxt >= len(seq.steps):
            values.update(status=DONE, reason="completed")
            counts["done"] += 1
        else:
            values["due_at"] = due_time(seq.steps[nxt], row.anchor_at, tz)
        updates.append((row.contact_id, row.sequence, values))

    for row in rows:
        cid = row.contact_id
        seq = sequences.get(row.sequence)
        if seq is None:
            finish(row, STOPPED, "sequence_removed")
            continue
        if row.step >= len(seq.steps):
            finish(row, DONE, "completed")
            continue
        customer = book.get(cid)
        if customer is None:
            finish(row, STOPPED, "unknown_contact")
            continue
        reason = _stop_reason(ctx, seq, row, customer)
        if reason:
            finish(row, STOPPED, reason)
            ctx.record("followup_stopped", contact_id=cid, sequence=seq.id, reason=reason)
            continue
        step = seq.steps[row.step]
        if step.condition is not None and not step.condition.matches(
            facts_of(customer.tags, customer, False)
        ):
            ctx.record("followup_step_skipped", contact_id=cid, sequence=seq.id, step=row.step)
            counts["skipped"] += 1
            advance(row, seq, False)
            continue
        last = ctx.ledger.last_marketing(cid)
        if interval > 0 and last is not None and now - last < interval:
            updates.append((cid, row.sequence, {"due_at": last + interval + 60, "updated_at": now}))
            counts["postponed"] += 1
            continue
        job = job_id(seq.id, row.run, row.step, row.due_at, tz)
        try:
            action = ctx.compose(
                cid,
                step.key,
                cls=ActionClass.MARKETING,
                contact_id=cid,
                job=job,
                name=customer.alias or customer.name,
                channel=customer.channel,
                channel_name=_channel_name(ctx, customer.channel),
            )
        except PersonaError as error:
            log.error("follow-up %s step %d: %s", seq.id, row.step, error)
            ctx.record("followup_template_error", sequence=seq.id, step=row.step, key=step.key)
            finish(row, STOPPED, "template")
            continue
        jobs.setdefault(job, []).append(action)
        sent.append((cid, seq.id, row.step))
        counts["sent"] += 1
        advance(row, seq, True)

    # Journal first: if we die before the enrolments advance, the same rows come back and
    # the ledger keeps one row per (job, recipient).
    for job, actions in jobs.items():
        ctx.outbox.enqueue_bulk(job, actions, meta={"plugin": "friends", "kind": "followup"})
        if ctx.ledger.job_status(job) is JobStatus.DONE:
            ctx.outbox.set_job_status(job, JobStatus.ACTIVE)  # today's job had finished
    with st.engine.begin() as conn:
        for cid, sequence, values in updates:
            conn.execute(
                sa.update(f).where(f.c.contact_id == cid, f.c.sequence == sequence).values(**values)
            )
    for cid, sequence, index in sent:
        ctx.record("followup_queued", contact_id=cid, sequence=sequence, step=index)
    return counts


def _channel_name(ctx: Ctx, code: str) -> str:
    st = ctx.state
    ch = st.data.channels.get(code) if code else None
    return ch.name if ch else ""


def frequency_warnings(ctx: Ctx, interval_h: float) -> list[str]:
    """Steps closer together than the marketing frequency window get postponed: say so."""
    st = ctx.state
    out = []
    for seq in st.data.followups.sequences.values():
        for a, b in zip(seq.steps, seq.steps[1:], strict=False):
            gap_h = (b.after_s - a.after_s) / 3600
            if 0 <= gap_h < interval_h:
                out.append(
                    f"follow-up {seq.id}: {b.key} comes {gap_h:.0f} h after {a.key}, but "
                    f"OUTBOX_MARKETING_MIN_INTERVAL_H={interval_h:g}: it will be postponed"
                )
    return out


def due_between(ctx: Ctx, start: datetime, end: datetime) -> list[tuple[str, datetime, int]]:
    """(sequence, first due time, how many) of the steps due in [start, end]."""
    st = ctx.state
    f = st.tables.followups
    with st.engine.connect() as conn:
        rows = conn.execute(
            sa.select(f.c.sequence, sa.func.min(f.c.due_at), sa.func.count())
            .where(
                f.c.status == ACTIVE,
                f.c.due_at >= start.timestamp(),
                f.c.due_at <= end.timestamp(),
            )
            .group_by(f.c.sequence)
        ).all()
    tz = start.tzinfo
    return [(seq, datetime.fromtimestamp(at, tz), int(n)) for seq, at, n in rows]
