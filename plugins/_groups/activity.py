"""Group activity for the analytics report: one `groups.message` event per room message
(sender and type, never the text), `groups.join` / `groups.leave` / `groups.moderation`
as they happen, and each complete hour summarised per room as `groups.hourly`:

    {hour, messages, active_members, joins, leaves, moderation, moderation_dry_run, members}

so activity by hour and the active ratio (active_members / members) need no scan of raw
events. The summary is computed from the event store itself, so a restart mid-hour loses
nothing."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from pond import Message

from .moderation import type_name
from .rooms import RoomConfig
from .state import Ctx

CATCH_UP_HOURS = 48  # after a long stop, older hours are not summarised


def message(event: Message, ctx: Ctx, room: RoomConfig) -> None:
    st = ctx.state
    if event.room is not None:
        st.note_room(event.room)
    st.spoke(room.id, event.sender)
    ctx.record(
        "message",
        room_id=room.id,
        chat_id=room.id,
        contact_id=event.sender.id,
        type=type_name(event),
    )


def hour_start(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def start_rollup(ctx: Ctx) -> None:
    if ctx.store.get("rolled_until") is None:
        ctx.store.set("rolled_until", hour_start(ctx.now).timestamp())


def rollup(ctx: Ctx) -> int:
    """Summarise every complete hour not yet summarised; returns how many hours."""
    current = hour_start(ctx.now).timestamp()
    done = ctx.store.get("rolled_until")
    start = float(done) if isinstance(done, int | float) else current
    start = max(start, current - CATCH_UP_HOURS * 3600)
    hours = 0
    while start < current:
        _summarise(ctx, datetime.fromtimestamp(start, UTC))
        start += 3600
        hours += 1
        ctx.store.set("rolled_until", start)
    return hours


def _summarise(ctx: Ctx, since: datetime) -> None:
    st = ctx.state
    until = since + timedelta(hours=1)
    sql = ctx.sql

    def of(kind: str) -> list[dict[str, object]]:
        return sql.events(kind=f"groups.{kind}", since=since, until=until)

    messages = of("message")
    per_room = Counter(str(e["room_id"]) for e in messages)
    senders: dict[str, set[str]] = {}
    for e in messages:
        senders.setdefault(str(e["room_id"]), set()).add(str(e["contact_id"]))
    joins = Counter(str(e["room_id"]) for e in of("join"))
    leaves = Counter(str(e["room_id"]) for e in of("leave"))
    moderation: Counter[tuple[str, bool]] = Counter()
    for e in of("moderation"):
        data = e["data"]
        dry = bool(data.get("dry_run")) if isinstance(data, dict) else False
        moderation[str(e["room_id"]), dry] += 1
    hour = since.astimezone(ctx.clock.tz).isoformat()
    for room_id in st.rooms:
        ctx.record(
            "hourly",
            room_id=room_id,
            chat_id=room_id,
            hour=hour,
            messages=per_room[room_id],
            active_members=len(senders.get(room_id, ())),
            joins=joins[room_id],
            leaves=leaves[room_id],
            moderation=moderation[room_id, False],
            moderation_dry_run=moderation[room_id, True],
            members=st.size(room_id),
        )
