"""Attribution, validity and rewards: the invite tree's rules.

An invite is attributed where the inviter shows up (a code in a friend request's hello, the
inviter the transport reports for a room join), starts `pending`, and becomes `valid` once the
invitee has stayed N hours (still a friend / still in the room). Self-invites and loops are
invalid at once and flagged for an operator; a burst of joins from one inviter is held until
an operator clears or voids it. Rewards go out once per threshold: the mark is written before
the message, so a restart (or a replayed job) never sends a second one."""

from __future__ import annotations

import logging

from pond import ActionClass

from .db import CLEARED, Invite
from .state import Ctx

log = logging.getLogger("pond.plugins.referral")
LIVE = ("pending", "held")


def _record_settled(ctx: Ctx, inv: Invite, status: str, reason: str) -> None:
    ctx.record(
        "settled",
        contact_id=inv.invitee_id,
        inviter=inv.inviter_id,
        path=inv.path,
        status=status,
        reason=reason,
    )


def attribute(
    ctx: Ctx,
    invitee_id: str,
    inviter_id: str,
    *,
    path: str,
    room_id: str = "",
    known: bool,
) -> Invite | None:
    """Record who brought whom; None when the invitee was attributed before."""
    st = ctx.state
    now = ctx.now.timestamp()
    rules = st.rules
    status, reason, review = "pending", "", ""
    mine = st.db.invite_of(inviter_id)
    if invitee_id == inviter_id:
        status, reason, review = "invalid", "self", "self"
    elif mine is not None and mine.inviter_id == invitee_id:
        status, reason, review = "invalid", "loop", "loop"
    elif known:
        status, reason = "invalid", "not_new"
    inv = st.db.add_invite(
        invitee_id=invitee_id,
        inviter_id=inviter_id,
        path=path,
        room_id=room_id,
        at=now,
        due=now + rules.stay_hours * 3600,
        status=status,
        reason=reason,
        review=review,
        settled_at=None if status == "pending" else now,
    )
    if inv is None:
        ctx.record("again", contact_id=invitee_id, inviter=inviter_id, path=path)
        return None
    ctx.record("invited", contact_id=invitee_id, inviter=inviter_id, path=path, room_id=room_id)
    if status != "pending":
        _record_settled(ctx, inv, status, reason)
    if review:
        _alert_review(ctx, review, inviter_id, invitee_id, 1)
    _check_burst(ctx, inviter_id, now)
    return st.db.invite_of(invitee_id)


def _check_burst(ctx: Ctx, inviter_id: str, now: float) -> None:
    st = ctx.state
    rules = st.rules
    recent = st.db.recent_by(inviter_id, now - rules.burst_minutes * 60)
    if len(recent) < rules.burst_count:
        return
    # Every attribution counts toward the burst (invalid ones too); only pending ones are
    # held. One alert per burst: when none of the window's invites was flagged yet.
    flagged_before = any(r.review == "burst" for r in recent)
    held = [r for r in recent if r.status == "pending" and r.review != CLEARED]
    for r in held:
        st.db.update(r.id, status="held", review="burst")
    if held:
        ctx.record("burst", contact_id=inviter_id, n=len(recent), held=len(held))
        if not flagged_before:
            _alert_review(ctx, "burst", inviter_id, "", len(recent))


def _alert_review(ctx: Ctx, kind: str, inviter_id: str, invitee_id: str, n: int) -> None:
    st = ctx.state
    ctx.alert(
        "referral/review_alert",
        kind=kind,
        inviter_id=inviter_id,
        inviter_name=display(ctx, inviter_id),
        invitee_id=invitee_id,
        count=n,
        minutes=_number(st.rules.burst_minutes),
    )


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def display(ctx: Ctx, contact_id: str) -> str:
    customer = ctx.book.get(contact_id)
    return (customer.alias or customer.name) if customer is not None else ""


def left_room(ctx: Ctx, invitee_id: str, room_id: str) -> None:
    st = ctx.state
    inv = st.db.invite_of(invitee_id)
    if inv is None or inv.path != "room_join" or inv.room_id != room_id:
        return
    if inv.status in LIVE:
        st.db.update(inv.id, status="invalid", reason="left", settled_at=ctx.now.timestamp())
        _record_settled(ctx, inv, "invalid", "left")


def gone(ctx: Ctx, invitee_id: str) -> None:
    """The invitee deleted us / churned (from the book's listener)."""
    st = ctx.state
    inv = st.db.invite_of(invitee_id)
    if inv is None or inv.path != "friend_request":
        return
    now = ctx.now.timestamp()
    if inv.status in LIVE:
        status, reason = "invalid", "deleted"
    elif inv.status == "valid":
        status, reason = "churned", "deleted"
    else:
        return
    st.db.update(inv.id, status=status, reason=reason, settled_at=now)
    _record_settled(ctx, inv, status, reason)


def _still_there(ctx: Ctx, inv: Invite) -> bool:
    if inv.path == "friend_request":
        customer = ctx.book.get(inv.invitee_id)
        return customer is not None and customer.is_friend and customer.stage != "churned"
    return True  # a room leave settles the invite at once (left_room)


async def settle(ctx: Ctx) -> int:
    """Pending invites whose stay is over become valid (or invalid); then rewards."""
    st = ctx.state
    now = ctx.now.timestamp()
    inviters: set[str] = set()
    done = 0
    for inv in st.db.due(now):
        if _still_there(ctx, inv):
            st.db.update(inv.id, status="valid", settled_at=now)
            _record_settled(ctx, inv, "valid", "")
            inviters.add(inv.inviter_id)
        else:
            st.db.update(inv.id, status="invalid", reason="deleted", settled_at=now)
            _record_settled(ctx, inv, "invalid", "deleted")
        done += 1
    for inviter in sorted(inviters):
        await reward(ctx, inviter)
    return done


async def reward(ctx: Ctx, inviter_id: str) -> None:
    st = ctx.state
    count = st.db.valid_count(inviter_id)
    now = ctx.now
    for rule in st.rules.rewards:
        if count < rule.threshold:
            break
        if not st.db.claim_reward(inviter_id, rule.threshold, count, now.timestamp()):
            continue  # given before (this run or an earlier one)
        book = ctx.book
        tags = book.tag(inviter_id, rule.tags, now, source="referral") if rule.tags else []
        opted_out = ctx.outbox.ledger.is_opted_out(inviter_id)
        ctx.record(
            "rewarded",
            contact_id=inviter_id,
            threshold=rule.threshold,
            count=count,
            tags=tags,
            messaged=not opted_out,
        )
        name = display(ctx, inviter_id)
        if not opted_out:
            await ctx.send(
                inviter_id,
                "referral/reward",
                cls=ActionClass.SERVICE,
                name=name,
                threshold=rule.threshold,
                count=count,
                reward=rule.name,
            )
        if rule.alert_staff:
            ctx.alert(
                "referral/reward_alert",
                customer_id=inviter_id,
                name=name,
                threshold=rule.threshold,
                count=count,
                reward=rule.name,
                opted_out=opted_out,
            )
