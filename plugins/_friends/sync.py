"""What the friends plugin learns from the governor's delivery events: the last time we
reached each contact, and who deleted the account (a send failed as not_friend)."""

from __future__ import annotations

import sqlalchemy as sa

from plugins._friends.state import Ctx


def outbound(ctx: Ctx, chunk: int = 5000) -> None:
    """From the governor's delivery events: last outbound per contact, and contacts who
    deleted the account (a send failed as not_friend) become churned. Reads forward from a
    cursor by event id (a primary-key range: cheap however big the table grows)."""
    st = ctx.state
    sql = ctx.sql
    sql.flush()
    ev = sql.events_table
    stored = st.kv.get("sync_cursor")
    if not isinstance(stored, int):  # first run: start from now, not from years of history
        with sql.engine.connect() as conn:
            first = int(conn.execute(sa.select(sa.func.max(ev.c.id))).scalar() or 0)
        st.kv.set("sync_cursor", first)
        return
    cursor = stored
    last: dict[str, float] = {}
    gone: set[str] = set()
    for _ in range(20):
        with sql.engine.connect() as conn:
            rows = conn.execute(
                sa.select(ev.c.id, ev.c.ts, ev.c.kind, ev.c.data)
                .where(ev.c.id > cursor)
                .order_by(ev.c.id)
                .limit(chunk)
            ).all()
        if not rows:
            break
        for _, ts, kind, data in rows:
            if kind not in ("out.sent", "out.failed"):
                continue
            to = str((data or {}).get("to", ""))
            if not to or ctx.is_room(to):
                continue
            if kind == "out.sent" and data.get("kind") == "send":
                last[to] = max(last.get(to, 0.0), ts.timestamp())
            elif kind == "out.failed" and data.get("reason") == "not_friend":
                gone.add(to)
        cursor = int(rows[-1][0])
        if len(rows) < chunk:
            break
    ctx.book.mark_outbound(last)
    for cid in sorted(gone):
        churn(ctx, cid)
    st.kv.set("sync_cursor", cursor)


def churn(ctx: Ctx, contact_id: str) -> None:
    book = ctx.book
    if not book.exists(contact_id):
        return
    book.upsert(contact_id, ctx.now, is_friend=False)
    book.set_stage(contact_id, "churned", ctx.now, source="deleted_us")
    ctx.record("churned", contact_id=contact_id, reason="deleted_us")
