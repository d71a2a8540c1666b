"""Invites by keyword (or a short request for it, "我想进群") in private chat: the first
room (by invite_order) with a free seat.

A seat is free when the room's member count plus the invites still pending (sent within
GROUPS_INVITE_HOLD_H and not yet accepted) is under its member_limit, so a burst of
requests cannot overfill a room that is one seat from full. Someone already in one of the
rooms is told so; someone with a pending invite is reminded instead of invited twice
(repeated invites are exactly what gets an account restricted). The INVITE action goes
through the outbox, so the governor's pacing and daily cap apply."""

from __future__ import annotations

import asyncio
import logging

from plugins._core.intent import asks_for
from pond import Action, ActionClass, ActionKind, Message, Outcome, capabilities, filters

from .rooms import RoomConfig
from .state import Ctx, GroupsState

log = logging.getLogger("pond.plugins.groups")
FULL_ALERT_EVERY_S = 6 * 3600


def normal(text: str) -> str:
    return filters.strip_mentions(text).lower()


def rooms_for(st: GroupsState, text: str) -> list[RoomConfig]:
    """Rooms that answer this keyword, in overflow order (invite_order, then file order).
    Every private message asks, so the keyword index is built once per configuration."""
    rooms = st.rooms
    cached = st.invite_index
    if cached is None or cached[0] is not rooms:
        ordered = sorted(enumerate(rooms.values()), key=lambda t: (t[1].invite_order, t[0]))
        by_word: dict[str, list[RoomConfig]] = {}
        for _, room in ordered:
            for keyword in room.invite_keywords:
                by_word.setdefault(normal(keyword), []).append(room)
        cached = st.invite_index = (rooms, by_word)
    return list(cached[1].get(normal(text), []))


def wanted_rooms(ctx: Ctx, text: str) -> tuple[str, list[RoomConfig]]:
    """The keyword and its rooms for a message that is the keyword ("进群") or asks for it
    in a few words ("我想进群", "拉我进群吧"; not "我不想进群")."""
    st = ctx.state
    rooms = rooms_for(st, text)
    if rooms:
        return normal(text), rooms
    rooms_for(st, "")  # builds the index
    index = st.invite_index[1] if st.invite_index else {}
    word = asks_for(ctx, text, index)
    return (word, list(index[word])) if word is not None else ("", [])


async def invite(event: Message, ctx: Ctx) -> None:
    st = ctx.state
    keyword, rooms = wanted_rooms(ctx, event.text)
    if not rooms:
        return
    contact = event.sender
    now = ctx.now.timestamp()

    def record(status: str, room_id: str = "") -> None:
        ctx.record("invite", contact_id=contact.id, room_id=room_id, status=status, keyword=keyword)

    inside = next((r for r in rooms if st.is_member(r.id, contact.id)), None)
    if inside is not None:
        record("already_member", inside.id)
        await ctx.reply("groups/invite_already", room_name=st.label(inside.id))
        return
    hold_since = now - ctx.config.invite_hold_h * 3600
    pending = st.db.pending_invite(contact.id, [r.id for r in rooms], hold_since)
    if pending is not None:
        record("pending", pending)
        await ctx.reply("groups/invite_pending", room_name=st.label(pending))
        return
    waiting = st.db.pending_counts(hold_since)
    target = next((r for r in rooms if st.size(r.id) + waiting.get(r.id, 0) < r.member_limit), None)
    if target is None:
        record("full")
        await ctx.reply("groups/invite_full")
        last = st.full_alerted.get(keyword, 0.0)
        if now - last >= FULL_ALERT_EVERY_S:
            st.full_alerted[keyword] = now
            ctx.alert(
                "groups/admin_rooms_full",
                keyword=keyword,
                rooms=[
                    {"name": st.label(r.id), "size": st.size(r.id), "limit": r.member_limit}
                    for r in rooms
                ],
            )
        return
    if not ctx.can(capabilities.INVITE):
        # The transport cannot invite: a person does it, and the customer is told so.
        log.info(
            "invite for %s to %s: transport cannot invite, admins asked", contact.id, target.id
        )
        record("manual", target.id)
        await ctx.reply("groups/invite_manual", room_name=st.label(target.id))
        ctx.alert(
            "groups/admin_invite",
            also=target.notify,
            customer_name=contact.display,
            customer_id=contact.id,
            room_name=st.label(target.id),
            group_id=target.id,
        )
        return
    st.db.invited(target.id, contact.id, contact.name, now)
    record("invited", target.id)
    await ctx.reply("groups/invite_sent", room_name=st.label(target.id))
    future = ctx.act(
        Action(ActionKind.INVITE, to=target.id, member_id=contact.id, cls=ActionClass.SERVICE)
    )

    def done(result: asyncio.Future[Outcome]) -> None:
        if result.cancelled() or result.result().status == "sent":
            return
        outcome = result.result()
        try:
            st.db.clear_invite(target.id, contact.id)  # the seat is free again
            ctx.record(
                "invite",
                contact_id=contact.id,
                room_id=target.id,
                status="failed",
                reason=outcome.reason,
                keyword=keyword,
            )
            ctx.outbox.submit(
                ctx.compose(contact.id, "groups/invite_failed", cls=ActionClass.SERVICE)
            )
        except Exception:  # a callback has no handler around it to report for it
            log.exception("after a failed invite of %s to %s", contact.id, target.id)

    future.add_done_callback(done)
