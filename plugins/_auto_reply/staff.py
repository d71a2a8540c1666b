"""The staff side of 1:1 service: hand-off tickets, staff notifications and the queue of
questions asked while the shop was closed (delivered in the morning summary).

Tickets and the night queue live in the plugin's durable key-value store: a restart must
not lose a customer who asked for a human, nor a question asked at night. The night queue
holds message text on purpose (staff need the questions); it is bounded per contact and in
total, and deleted as soon as the summary is sent."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from plugins._auto_reply.state import Ctx, stored_int
from pond import ActionClass, Message, MessageType, Room

log = logging.getLogger("pond.plugins.auto_reply")
TICKET = "handoff:"
NIGHT = "night:"
MAX_NIGHT_CONTACTS = 200
MAX_NIGHT_ITEMS = 5
MAX_NIGHT_TEXT = 120
SUMMARY_ENTRIES = 15  # what fits in one WeChat message; the rest is counted


def targets(ctx: Ctx) -> list[str | Room]:
    """Who hears about hand-offs: the admins (AUTO_REPLY_NOTIFY_ADMINS) and the staff room."""
    found: list[str | Room] = []
    if ctx.config.notify_admins:
        found.extend(ctx.admins.ids())
    if ctx.config.staff_room_id:
        found.append(Room(ctx.config.staff_room_id))
    return found


async def notify(ctx: Ctx, key: str, **variables: Any) -> int:
    sent = 0
    for to in targets(ctx):
        await ctx.send(to, key, cls=ActionClass.SERVICE, **variables)
        sent += 1
    if not sent:
        log.warning(
            "%s: no admin or staff room to tell (BOT_ADMIN_IDS, AUTO_REPLY_STAFF_ROOM_ID)", key
        )
    return sent


# -- hand-off tickets --------------------------------------------------------------------------


def tickets(ctx: Ctx) -> list[dict[str, Any]]:
    found = [
        {**value, "chat_id": key.removeprefix(TICKET)}
        for key, value in ctx.store.items(TICKET)
        if isinstance(value, dict)
    ]
    return sorted(found, key=lambda t: int(t.get("no", 0)))


def ticket_chats(ctx: Ctx) -> set[str]:
    """Chats with an open ticket, kept in memory so each message can check it for free."""
    st = ctx.state
    if st.ticket_chats is None:
        st.ticket_chats = {t["chat_id"] for t in tickets(ctx)}
    return st.ticket_chats


def open_ticket(ctx: Ctx, message: Message, reason: str) -> tuple[int, bool]:
    """The chat's ticket number, and whether it is new (a repeat keeps its number)."""
    key = TICKET + message.chat_id
    existing = ctx.store.get(key)
    if isinstance(existing, dict):
        return int(existing.get("no", 0)), False
    number = stored_int(ctx.store.get("handoff_seq", 0)) + 1
    ctx.store.set("handoff_seq", number)
    ctx.store.set(
        key,
        {
            "no": number,
            "contact_id": message.sender.id,
            "name": message.sender.display,
            "at": ctx.now.timestamp(),
            "reason": reason,
            "answered": False,
        },
    )
    ticket_chats(ctx).add(message.chat_id)
    return number, True


def listing(ctx: Ctx, tickets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open tickets as the staff templates show them."""
    now = ctx.now.timestamp()
    return [
        {
            "no": int(t.get("no", 0)),
            "customer": str(t.get("name", "")),
            "contact_id": str(t.get("contact_id", "")),
            "reason": str(t.get("reason", "")),
            "minutes": int((now - float(t.get("at", now))) // 60),
            "answered": bool(t.get("answered")),
        }
        for t in tickets
    ]


def find_ticket(ctx: Ctx, wanted: str) -> dict[str, Any] | None:
    """By number ("3" or "#3") or by contact id."""
    number = wanted.lstrip("#")
    for ticket in tickets(ctx):
        if number.isdigit() and int(ticket.get("no", 0)) == int(number):
            return ticket
        if wanted in (ticket["chat_id"], ticket.get("contact_id")):
            return ticket
    return None


def close_ticket(ctx: Ctx, chat_id: str, how: str) -> dict[str, Any] | None:
    ticket = ctx.store.get(TICKET + chat_id)
    if not isinstance(ticket, dict):
        return None
    ctx.store.delete(TICKET + chat_id)
    ticket_chats(ctx).discard(chat_id)
    waited = int(ctx.now.timestamp() - float(ticket.get("at", 0)))
    ctx.record(
        "handoff_ended",
        chat_id=chat_id,
        contact_id=str(ticket.get("contact_id", "")),
        ticket=int(ticket.get("no", 0)),
        how=how,
        answered=bool(ticket.get("answered")),
        seconds=waited,
    )
    return {**ticket, "chat_id": chat_id, "minutes": waited // 60}


def mark_answered(ctx: Ctx, chat_id: str) -> bool:
    ticket = ctx.store.get(TICKET + chat_id)
    if not isinstance(ticket, dict) or ticket.get("answered"):
        return False
    ctx.store.set(TICKET + chat_id, {**ticket, "answered": True})
    return True


async def expire_tickets(ctx: Ctx, chat_id: str | None = None) -> None:
    """Hand-offs whose pause ran out (all, or the one of `chat_id`). Staff hear of the
    ones nobody answered from the phone, since that customer was promised a human."""
    chats = sorted(ticket_chats(ctx)) if chat_id is None else [chat_id]
    for chat in chats:
        if chat not in ticket_chats(ctx) or ctx.pauses.reason(chat) is not None:
            continue
        closed = close_ticket(ctx, chat, "timeout")
        if closed and not closed.get("answered"):
            await notify(
                ctx,
                "auto_reply/handoff_expired",
                ticket=int(closed.get("no", 0)),
                customer=str(closed.get("name", "")),
                customer_id=str(closed.get("contact_id", "")),
                minutes=int(closed["minutes"]),
            )


# -- questions asked while closed --------------------------------------------------------------


def note_night(ctx: Ctx, message: Message, period: str, *, handoff: bool = False) -> bool:
    """Queue the message for the morning summary. True when this customer has not yet
    been told this closed period that we are closed (the caller tells them)."""
    key = NIGHT + message.sender.id
    entry: dict[str, Any]
    found = ctx.store.get(key)
    if isinstance(found, dict):
        entry = found
    elif len(ctx.store.items(NIGHT)) >= MAX_NIGHT_CONTACTS:
        ctx.record("night_queue_full", contact_id=message.sender.id)
        entry = {}  # remembers that they were told, queues nothing: the summary is full
    else:
        entry = {"name": message.sender.display, "first": ctx.now.timestamp(), "items": []}
    first = entry.get("told") != period
    if "items" in entry:
        entry["count"] = int(entry.get("count", 0)) + 1
        entry["handoff"] = bool(entry.get("handoff")) or handoff
        items = list(entry["items"])
        if len(items) < MAX_NIGHT_ITEMS:
            text = message.text.strip()[:MAX_NIGHT_TEXT] if message.type is MessageType.TEXT else ""
            items.append(
                {"at": ctx.now.strftime("%H:%M"), "type": message.type.value, "text": text}
            )
        entry["items"] = items
    entry["told"] = period
    ctx.store.set(key, entry)
    return first


async def morning_summary(ctx: Ctx) -> int:
    """Send the night's queue to staff, then forget it. Returns how many customers."""
    queued = ctx.store.items(NIGHT)
    entries = [
        {**entry, "contact_id": key.removeprefix(NIGHT)}
        for key, entry in queued
        if isinstance(entry, dict) and entry.get("items")
    ]
    if entries and not targets(ctx):
        return 0  # kept (bounded) until someone can be told
    if not entries:
        for key, _ in queued:  # only "already told" marks of a closed period: done
            ctx.store.delete(key)
        return 0
    entries.sort(key=lambda e: float(e.get("first", 0)))
    shown = [
        {
            "name": str(e.get("name", "")),
            "contact_id": e["contact_id"],
            "count": int(e.get("count", 0)),
            "handoff": bool(e.get("handoff")),
            "first_at": datetime.fromtimestamp(float(e.get("first", 0)), ctx.clock.tz).strftime(
                "%H:%M"
            ),
            "messages": list(e.get("items", []))[:2],
        }
        for e in entries[:SUMMARY_ENTRIES]
    ]
    await notify(
        ctx,
        "auto_reply/morning_summary",
        entries=shown,
        total=len(entries),
        more=max(0, len(entries) - len(shown)),
    )
    for key, _ in queued:
        ctx.store.delete(key)
    ctx.record("morning_summary", customers=len(entries))
    return len(entries)
