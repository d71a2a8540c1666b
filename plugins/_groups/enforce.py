"""Moderation decisions and what follows them: strikes, warnings, removal or a request to
the admins, the audit log, and undoing a strike.

Every decision is audited (rule, message type, message id, time; never the text) and
recorded as a `groups.moderation` event, in dry-run mode too, where nothing else happens."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pond import (
    Action,
    ActionClass,
    ActionKind,
    Contact,
    Message,
    Mode,
    Outcome,
    capabilities,
)

from .db import Strike
from .moderation import content_rule, escalation, qr_in_scope, type_name
from .qr import has_qr
from .rooms import RoomConfig
from .state import Ctx
from .welcome import quiet, room_target

log = logging.getLogger("pond.plugins.groups")


def exempt(ctx: Ctx, room: RoomConfig, contact_id: str) -> bool:
    """Bot admins, the room's admins and whitelist (staff) are never moderated."""
    return room.exempt(contact_id) or ctx.admins.is_admin(contact_id)


async def moderate(event: Message, ctx: Ctx, room: RoomConfig) -> None:
    st = ctx.state
    rules = room.moderation
    sender = event.sender
    if not rules.enabled or exempt(ctx, room, sender.id) or quiet(ctx, room.id):
        return
    at = event.timestamp.timestamp()
    flood = rules.flood_messages > 0 and st.flood.hit(
        room.id, sender.id, at, rules.flood_messages, rules.flood_seconds
    )
    verdict = None
    if qr_in_scope(event, rules, st.joined_at(room.id, sender.id)):
        verdict = await has_qr(event.file)
        ctx.record("qr_checked", room_id=room.id, message_id=event.id, verdict=verdict)
    rule = content_rule(event, rules, verdict)
    if rule is None and flood:
        rule = "flood"
    if rule is None:
        return
    await strike(ctx, room, sender, rule, type_name(event), event.id)


async def strike(
    ctx: Ctx,
    room: RoomConfig,
    member: Contact,
    rule: str,
    msg_type: str,
    message_id: str,
) -> str:
    """Record a strike and carry out the next step of the ladder; returns the action."""
    st = ctx.state
    rules = room.moderation
    dry = st.dry_run(room)
    now = ctx.now.timestamp()
    strike_id = st.db.add_strike(room.id, member.id, rule, msg_type, now, dry)
    count = st.db.count_strikes(room.id, member.id, now - rules.strike_hours * 3600, dry)
    action = escalation(count, rule, rules)
    detail = ""
    if action == "remove":
        if ctx.mode(capabilities.KICK) is Mode.NONE:
            # The platform has no API for it (企业微信): staff remove them by hand.
            action, detail = "notify_admins", "no_kick_api"
        elif not ctx.can(capabilities.KICK):
            action, detail = "notify_admins", "no_kick_capability"
        elif not room.can_remove:
            action, detail = "notify_admins", "not_room_admin"
    evidence: dict[str, Any] = {
        "room_id": room.id,
        "contact_id": member.id,
        "rule": rule,
        "msg_type": msg_type,
        "strike_id": strike_id,
        "strikes": count,
        "dry_run": dry,
    }
    st.db.audit(at=now, action=action, message_id=message_id, detail=detail, **evidence)
    ctx.record(
        "moderation",
        chat_id=room.id,
        action=action,
        detail=detail,
        **{("type" if k == "msg_type" else k): v for k, v in evidence.items()},
    )
    log.info(
        "moderation %s%s: room=%s member=%s rule=%s type=%s strikes=%d",
        "(dry run) " if dry else "",
        action,
        room.id,
        member.id,
        rule,
        msg_type,
        count,
    )
    if dry:
        return action
    if action in ("remove", "notify_admins"):
        # Being removed (by the bot or by hand): the welcome due in this room, which this
        # very message may send right after, must not greet them.
        st.unwelcome(room.id, member.id)
    variables: dict[str, Any] = {
        "name": member.name or member.display,
        "rule": rule,
        "strike": count,
        "warnings": rules.warnings,
        "room_name": st.label(room.id),
    }
    if action in ("warn", "final_warn"):
        key = "groups/warn" if action == "warn" else "groups/warn_final"
        await ctx.send(
            room_target(st, room), key, cls=ActionClass.SERVICE, mentions=[member.id], **variables
        )
    elif action == "remove":
        remove(ctx, room, member, rule, count)
    else:
        notify_admins(ctx, room, member, rule, count, detail)
    return action


def remove(ctx: Ctx, room: RoomConfig, member: Contact, rule: str, count: int) -> None:
    """Kick through the outbox (capped by the governor); announce only once it happened,
    and if it did not, ask the admins to do it by hand."""
    st = ctx.state
    future = ctx.act(
        Action(ActionKind.KICK, to=room.id, member_id=member.id, cls=ActionClass.SERVICE)
    )

    def done(result: asyncio.Future[Outcome]) -> None:
        if result.cancelled():
            return
        outcome = result.result()
        now = ctx.now.timestamp()
        try:
            if outcome.status == "sent":
                st.left(room.id, member.id, now)
                ctx.outbox.submit(
                    ctx.compose(
                        room_target(st, room),
                        "groups/removed",
                        cls=ActionClass.SERVICE,
                        name=member.name or member.display,
                        rule=rule,
                        room_name=st.label(room.id),
                    )
                )
                return
            # Refused by the platform's rules (not attempted): a request for staff, not a
            # failure of the bot.
            refused = outcome.reason.startswith(f"{ctx.transport_name}:")
            failed = "notify_admins" if refused else "remove_failed"
            st.db.audit(
                at=now,
                room_id=room.id,
                contact_id=member.id,
                action=failed,
                rule=rule,
                strikes=count,
                detail=outcome.reason[:64],
            )
            ctx.record(
                "moderation",
                room_id=room.id,
                chat_id=room.id,
                contact_id=member.id,
                rule=rule,
                action=failed,
                detail=outcome.reason,
                strikes=count,
                dry_run=False,
            )
            notify_admins(ctx, room, member, rule, count, f"kick_{outcome.reason}")
        except Exception:  # a callback has no handler around it to report for it
            log.exception("after removing %s from %s", member.id, room.id)

    future.add_done_callback(done)


def notify_admins(
    ctx: Ctx,
    room: RoomConfig,
    member: Contact,
    rule: str,
    count: int,
    reason: str,
) -> None:
    """Ask people to remove the member by hand: the bot's admins and the room's notify list."""
    st = ctx.state
    if not ctx.admins.ids() and not room.notify:
        log.warning("no admin to ask about removing %s from %s", member.id, room.id)
    ctx.alert(
        "groups/admin_remove",
        also=room.notify,
        room_name=st.label(room.id),
        group_id=room.id,
        member_name=member.name or member.display,
        member_id=member.id,
        rule=rule,
        strikes=count,
        reason=reason,
    )


def undo(ctx: Ctx, target: Strike, admin_id: str) -> bool:
    st = ctx.state
    now = ctx.now.timestamp()
    if not st.db.revoke(target.id, admin_id, now):
        return False
    st.db.audit(
        at=now,
        room_id=target.room_id,
        contact_id=target.contact_id,
        action="undo",
        rule=target.rule,
        msg_type=target.msg_type,
        strike_id=target.id,
        dry_run=target.dry_run,
        actor=admin_id,
    )
    ctx.record(
        "strike_undone",
        room_id=target.room_id,
        chat_id=target.room_id,
        contact_id=target.contact_id,
        strike_id=target.id,
        rule=target.rule,
        admin=admin_id,
    )
    return True
