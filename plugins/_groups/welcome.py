"""Joins and leaves, batched welcomes, and posting a room's rules.

Welcome batching runs on the bot's clock, never on a timer of its own: joiners are kept in
a durable batch, and the batch goes out at the first chance after its window closes (the
minute job, or the next event in that room) and after the room's cooldown. So a restart
keeps the batch, the fake clock of tests drives it, and a burst of 30 joiners is one
message instead of 30."""

from __future__ import annotations

import logging
from datetime import datetime

from pond import ActionClass, MemberJoined, MemberLeft, Room

from .rooms import RoomConfig
from .state import Ctx, GroupsState, Joiner

log = logging.getLogger("pond.plugins.groups")


def quiet(ctx: Ctx, room_id: str) -> bool:
    """Is the bot to keep quiet in this room? An operator's pause or a hand-off, yes. A
    takeover (the owner typed in the group) is not: it is a 1:1 notion, and a group keeps
    needing its welcomes and its moderation while the owner chats in it."""
    reason = ctx.pauses.reason(room_id)
    return reason is not None and reason != "takeover"


def room_target(st: GroupsState, room: RoomConfig) -> Room:
    # A Room (not a bare id) tells compose() this is a room even before the App saw it,
    # so the room's persona layer applies to scheduled posts after a restart too.
    return Room(room.id, topic=st.label(room.id))


async def member_joined(event: MemberJoined, ctx: Ctx, room: RoomConfig) -> None:
    st = ctx.state
    now = ctx.now.timestamp()
    self_id = ctx.self_id
    st.note_room(event.room)
    people = [m for m in event.members if m.id != self_id]
    if not people:
        return
    invited = {m.id: st.joined(room.id, m, now) for m in people}
    if event.room.member_count <= 0 and room.id in st.sizes:
        # No figure from the transport this time: move the last one by what we saw.
        st.set_size(room.id, st.sizes[room.id] + len(people))
    size = st.size(room.id)
    for m in people:
        ctx.record(
            "join",
            room_id=room.id,
            chat_id=room.id,
            contact_id=m.id,
            members=size,
            invited=invited[m.id],
            inviter=event.inviter.id if event.inviter else "",
        )
    if room.welcome:
        joiners = [Joiner(m.id, m.name, now, m.is_friend) for m in people]
        st.add_joiners(room.id, joiners, now)
    await flush_welcomes(ctx, only=room.id)


async def member_left(event: MemberLeft, ctx: Ctx, room: RoomConfig) -> None:
    st = ctx.state
    now = ctx.now.timestamp()
    self_id = ctx.self_id
    st.note_room(event.room)
    for m in event.members:
        if m.id == self_id:
            log.warning("the account left or was removed from room %s", room.id)
            ctx.record("bot_left", room_id=room.id, chat_id=room.id)
            continue
        st.left(room.id, m.id, now)
        if event.room.member_count <= 0 and room.id in st.sizes:
            st.set_size(room.id, st.sizes[room.id] - 1)
        remover = event.remover.id if event.remover else ""
        ctx.record(
            "leave",
            room_id=room.id,
            chat_id=room.id,
            contact_id=m.id,
            members=st.size(room.id),
            removed=bool(remover),
            by_us=bool(remover) and remover == self_id,
        )
    await flush_welcomes(ctx, only=room.id)


async def flush_welcomes(ctx: Ctx, only: str | None = None) -> None:
    """Send every batch whose window has closed and whose room is out of its cooldown."""
    st = ctx.state
    cfg = ctx.config
    now = ctx.now.timestamp()
    for room_id, batch in list(st.pending.items()):
        if (only is not None and room_id != only) or st.pending.get(room_id) is not batch:
            continue  # another room, or sent meanwhile by a handler in that room
        room = st.room(room_id)
        if room is None or not room.welcome:  # unconfigured or switched off meanwhile
            st.save_batch(room_id, None)
            continue
        if now < batch.first + cfg.welcome_window_s:
            continue
        if now < st.welcomed_at.get(room_id, 0.0) + room.welcome_cooldown_s:
            continue
        if quiet(ctx, room_id):
            continue
        st.save_batch(room_id, None)
        # Someone who waited past the limit (downtime, a long pause) gets no late welcome.
        max_age = max(
            cfg.welcome_max_age_min * 60, room.welcome_cooldown_s + cfg.welcome_window_s + 120
        )
        fresh = [m for m in batch.members if now - m.at <= max_age]
        if len(fresh) < len(batch.members):
            ctx.record(
                "welcome_dropped",
                room_id=room_id,
                chat_id=room_id,
                count=len(batch.members) - len(fresh),
            )
        if not fresh:
            continue
        st.stamp("welcomed", room_id, now)
        shown = fresh[: max(1, cfg.welcome_max_mentions)]
        await ctx.send(
            room_target(st, room),
            "groups/welcome",
            cls=ActionClass.SERVICE,
            mentions=[m.id for m in shown],
            names=[m.name or m.id for m in shown],
            count=len(fresh),
            more=len(fresh) - len(shown),
            room_name=st.label(room_id),
        )
        ctx.record("welcome", room_id=room_id, chat_id=room_id, count=len(fresh))
        if room.welcome_dm_rules:
            for m in fresh:
                if not m.friend:  # WeChat delivers no private message to a non-friend
                    ctx.record("rules", room_id=room_id, contact_id=m.id, trigger="dm", sent=False)
                    continue
                await ctx.send(
                    m.id,
                    room.rules_key,
                    cls=ActionClass.SERVICE,
                    room_name=st.label(room_id),
                    warnings=room.moderation.warnings,
                )
                ctx.record("rules", room_id=room_id, contact_id=m.id, trigger="dm", sent=True)


async def post_rules(ctx: Ctx, room: RoomConfig, trigger: str, asker: str = "") -> bool:
    """Post the room's rules (a keyword, or its schedule). A keyword within the room's
    cooldown after the last post says nothing: the rules are still on screen."""
    st = ctx.state
    now = ctx.now.timestamp()
    if trigger == "keyword" and now < st.rules_at.get(room.id, 0.0) + room.rules_cooldown_s:
        ctx.record("rules", room_id=room.id, chat_id=room.id, trigger=trigger, sent=False)
        return False
    st.stamp("rules", room.id, now)
    mentions = [asker] if asker else []
    await ctx.send(
        room_target(st, room),
        room.rules_key,
        cls=ActionClass.REPLY if asker else ActionClass.SERVICE,
        mentions=mentions,
        room_name=st.label(room.id),
        warnings=room.moderation.warnings,
    )
    ctx.record("rules", room_id=room.id, chat_id=room.id, trigger=trigger, sent=True)
    return True


async def scheduled_rules(ctx: Ctx) -> None:
    """Rooms whose rules_cron had a fire time since we last served it post their rules once
    (several fire times missed while the bot was down also give one post)."""
    st = ctx.state
    now = ctx.now
    for room in list(st.rooms.values()):
        if room.rules_trigger is None:
            continue
        since = st.cron_since.get(room.id)
        if since is None:
            st.stamp("cron", room.id, now.timestamp())  # counting starts when first seen
            continue
        start = datetime.fromtimestamp(since + 1, now.tzinfo)
        due = room.rules_trigger.get_next_fire_time(None, start)
        if due is None or due > now:
            continue
        st.stamp("cron", room.id, now.timestamp())
        if quiet(ctx, room.id):
            continue
        await post_rules(ctx, room, "schedule")
