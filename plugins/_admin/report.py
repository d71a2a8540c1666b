"""The daily numbers, computed from the event store (what happened, never message text):
the same function serves the morning summary and the "report now" command."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta
from typing import Any

from pond import AgendaItem, Context, waits_for_staff

TOP = 5  # reasons / places listed per section; the rest are summed up
# Sections other plugins fill through Plugin.summary_source (admin/report renders them when
# present): the analytics plugin's "growth", the operations report's headline numbers.
SECTIONS = ("growth",)


def window(ctx: Context, day: date) -> tuple[datetime, datetime]:
    tz = ctx.settings.bot.timezone
    start = datetime.combine(day, time(0), tz)
    return start, datetime.combine(day + timedelta(days=1), time(0), tz)


def _data(event: dict[str, object]) -> dict[str, Any]:
    data = event.get("data")
    return data if isinstance(data, dict) else {}


def _top(counter: Counter[str]) -> list[dict[str, Any]]:
    return [{"reason": k, "n": n} for k, n in counter.most_common(TOP)]


def day_numbers(ctx: Context, day: date, operators: set[str]) -> dict[str, Any]:
    """One day's numbers. Operators' own chats (commands, alerts) are left out."""
    since, until = window(ctx, day)

    def events(kind: str) -> list[dict[str, object]]:
        return ctx.sql.events(kind=kind, since=since, until=until)

    inbound = [e for e in events("in.message") if e["contact_id"] not in operators]
    out = [e for e in events("out.sent") if _data(e).get("to") not in operators]
    sends = [e for e in out if _data(e).get("kind") == "send"]
    by_cls = Counter(str(_data(e).get("cls", "")) for e in sends)
    errors = events("handler.error")
    places = Counter(str(_data(e).get("where", "?")) for e in errors)
    refused = Counter(
        str(_data(e).get("reason", ""))
        for e in events("out.skipped")
        if _data(e).get("to") not in operators
    )
    # Handed to staff as 企业微信 tasks: not skipped, waiting for a staff member's confirm.
    skipped = Counter({r: n for r, n in refused.items() if not waits_for_staff(r)})
    deferred = Counter(
        str(_data(e).get("reason", "")).split(":")[0]
        for e in events("out.deferred")
        if _data(e).get("to") not in operators
    )
    failed = Counter(
        str(_data(e).get("reason", ""))
        for e in events("out.failed")
        if _data(e).get("to") not in operators
    )
    counts = ctx.ledger.counts(day.isoformat())
    return {
        "day": day.strftime("%m-%d"),
        "inbound": len(inbound),
        "inbound_rooms": sum(1 for e in inbound if e["room_id"]),
        "contacts": len({e["contact_id"] for e in inbound if e["contact_id"]}),
        "replies": by_cls.get("reply", 0),
        "sent_service": by_cls.get("service", 0),
        "sent_marketing": by_cls.get("marketing", 0),
        "sent_bulk": sum(1 for e in sends if _data(e).get("job")),
        "friend_requests": len(events("in.friend_request")),
        "friends_accepted": sum(1 for e in out if _data(e).get("kind") == "accept_friend"),
        "optouts": sum(1 for e in events("contact.opt_out") if _data(e).get("new")),
        "optins": sum(1 for e in events("contact.opt_in") if _data(e).get("cleared")),
        "takeovers": len(events("chat.takeover")),
        "breaker_trips": len(events("breaker.trip")),
        "errors": len(errors),
        "error_places": [{"where": k, "n": n} for k, n in places.most_common(3)],
        "skipped": _top(skipped),
        "staff_tasks": sum(n for r, n in refused.items() if waits_for_staff(r)),
        "deferred": _top(deferred),
        "failed": _top(failed),
        "counters": [
            {"kind": k, "n": counts[k], "cap": cap}
            for k, cap in ctx.settings.outbox.caps().items()
            if counts.get(k)
        ],
    }


async def report(ctx: Context, day: date, period: str, operators: set[str]) -> dict[str, Any]:
    """Everything admin/report renders: the day's numbers, other plugins' headline numbers
    (a failing one is logged and left out: the rest still goes out), what waits for a human
    now, and what is scheduled for the rest of today."""
    numbers = day_numbers(ctx, day, operators)
    summaries = await ctx.summaries(day)
    review_errors: list[str] = []
    reviews = await ctx.reviews(failed=review_errors)
    kinds = Counter(item.kind for _, item in reviews)
    agenda_errors: list[str] = []
    agenda = await ctx.agenda(failed=agenda_errors)
    return {
        **numbers,
        **{section: summaries.get(section) for section in SECTIONS},
        "period": period,
        "reviews": len(reviews),
        "review_kinds": [{"kind": k, "n": n} for k, n in kinds.most_common()],
        "agenda": agenda_rows(ctx, [item for _, item in agenda[:10]]),
        "agenda_more": max(0, len(agenda) - 10),
        "source_errors": sorted({*review_errors, *agenda_errors}),
    }


def agenda_rows(ctx: Context, items: list[AgendaItem]) -> list[dict[str, Any]]:
    """Agenda items as the operator reads them: the time (with the date when it is not
    today), what it is, its id (what to type to act on it) and its title."""
    tz = ctx.settings.bot.timezone
    today = ctx.now.astimezone(tz).date()
    rows = []
    for item in items:
        local = item.at.astimezone(tz)
        rows.append(
            {
                "at": local.strftime("%H:%M" if local.date() == today else "%m-%d %H:%M"),
                "kind": item.kind,
                "detail": item.detail,
                "title": item.title if item.title != item.detail else "",
                "count": item.count,
            }
        )
    return rows
