"""The review queue's numbering and the kinds of item the operator plugin owns, both read
from the send journal: bulk deliveries left "unknown" by a crash (the journal cannot tell
whether they went out, so they are never re-sent silently; the operator checks the phone
and answers per item: sent, resend, or skip), and tasks waiting for staff to confirm them
in the 企业微信 client (shown so someone nudges the staff member; they settle by themselves)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from pond import Context, JobStatus, ReviewItem, RowStatus, waits_for_staff

UNKNOWN = "unknown_delivery"
STAFF_TASK = "staff_task"
OUTCOMES = {"sent": RowStatus.SENT, "resend": RowStatus.PENDING, "skip": RowStatus.SKIPPED}
_LISTED = "reviews:"  # + the operator's id: the numbering of the last listing they saw


def unknown_items(ctx: Context, limit: int = 500) -> list[ReviewItem]:
    rows = ctx.ledger.rows
    with ctx.ledger.engine.connect() as conn:
        jobs = conn.execute(
            sa.select(rows.c.job).where(rows.c.status == RowStatus.UNKNOWN.value).distinct()
        ).scalars()
        job_ids = sorted(str(j) for j in jobs)
    items: list[ReviewItem] = []
    for job in job_ids:
        for row in ctx.ledger.rows_of(job, RowStatus.UNKNOWN):
            room = not row.action.contact_id and ctx.is_room(row.recipient)
            items.append(
                ReviewItem(
                    kind=UNKNOWN,
                    ref=json.dumps([row.job, row.recipient]),
                    at=row.updated_at or None,
                    contact_id="" if room else row.recipient,
                    room_id=row.recipient if room else "",
                    detail=f"{row.job} {row.action.key}".strip(),
                    command="resolve",
                )
            )
            if len(items) >= limit:
                return items
    return items


def staff_items(ctx: Context, limit: int = 500) -> list[ReviewItem]:
    """Tasks a staff member must confirm in the 企业微信 client (a 群发, a 朋友圈 post): one
    item per job, with how many of its rows wait. Nothing to settle here: the results come
    from the platform by themselves (the transport polls them into the journal)."""
    rows = ctx.ledger.rows
    with ctx.ledger.engine.connect() as conn:
        found = conn.execute(
            sa.select(rows.c.job, rows.c.reason, sa.func.count(), sa.func.min(rows.c.updated_at))
            .where(rows.c.status == RowStatus.SKIPPED.value)
            .group_by(rows.c.job, rows.c.reason)
            .order_by(sa.func.min(rows.c.updated_at))
        ).all()
    return [
        ReviewItem(
            kind=STAFF_TASK,
            ref=str(job),
            at=float(at) if at else None,
            detail=f"{job} ×{n}",
        )
        for job, reason, n, at in found
        if waits_for_staff(str(reason))
    ][:limit]


def remember_listing(ctx: Context, operator: str, listed: list[tuple[str, ReviewItem]]) -> None:
    """What number N meant in the listing this operator just saw ("处理 N ..." uses it)."""
    entries = [[plugin, item.kind, item.ref] for plugin, item in listed]
    ctx.store.set(_LISTED + operator, entries)


def listed(ctx: Context, operator: str) -> list[list[str]]:
    value = ctx.store.get(_LISTED + operator, [])
    return [list(map(str, v)) for v in value] if isinstance(value, list) else []


def resolve_unknown(ctx: Context, ref: str, outcome: str) -> bool:
    """Settle one unknown delivery; False if it is no longer unknown (settled meanwhile)."""
    try:
        job, recipient = json.loads(ref)
    except (ValueError, TypeError):
        return False
    now = ctx.now.timestamp()
    changed = ctx.ledger.mark(
        job, recipient, OUTCOMES[outcome], now, reason="operator", expect=RowStatus.UNKNOWN
    )
    if changed and outcome == "resend" and ctx.ledger.job_status(job) is JobStatus.DONE:
        # The job finished around the unknown row; reopen it so the worker sends the row
        # (at-most-once as ever: it is marked "sending" before the call).
        ctx.outbox.set_job_status(job, JobStatus.ACTIVE)
    ctx.outbox.wake()
    return changed


def row_view(ctx: Context, n: int, plugin: str, item: ReviewItem, at: str) -> dict[str, Any]:
    spec = ctx.commands.specs.get(item.command)
    hint = ctx.commands.catalog.info(item.command).display if spec else ""
    return {
        "n": n,
        "plugin": plugin,
        "kind": item.kind,
        "who": item.contact_id or item.room_id,
        "detail": item.detail,
        "title": item.title if item.title != item.detail else "",
        "at": at,
        "hint": hint,
        "args": " ".join(item.args),
    }
