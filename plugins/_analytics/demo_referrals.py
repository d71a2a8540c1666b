"""Referrals in the demo month: some new friends came with a customer's invite code (the
referral plugin accepted them), in the event shapes the plugin writes. A few customers
bring most of them, as in life; most invites become valid after the 24-hour stay, some are
not new to the brand, a few are voided by the operator, the last day's are still pending."""

from __future__ import annotations

import random

from .demo_month import OPERATOR, Contact, Month

SHARE = 0.18  # of the month's new friends
AMBASSADORS = 25
STAY = 24 * 3600.0
CHANNEL = "referral"


def pick(rng: random.Random, people: list[Contact]) -> tuple[dict[str, str], list[str]]:
    """invitee -> inviter, for new friends who came with a code (their channel becomes
    the referral channel, as the plugin records it); and the customers who invite."""
    old = [c for c in people if c.added is None and c.is_friend]
    if not old:
        return {}, []
    ambassadors = rng.sample(old, k=min(AMBASSADORS, len(old)))
    weights = [1.0 / (i + 1) for i in range(len(ambassadors))]
    found: dict[str, str] = {}
    for c in people:
        if c.added is not None and rng.random() < SHARE:
            found[c.id] = rng.choices(ambassadors, weights)[0].id
            c.channel = CHANNEL
    return found, [a.id for a in ambassadors]


def referred(m: Month, c: Contact, inviter: str) -> None:
    """What the referral plugin writes for a friend request carrying `inviter`'s code."""
    rng, w = m.rng, m.w
    assert c.added is not None
    at = c.added
    w.event("in.friend_request", at - 60, contact_id=c.id, chat_id=c.id, stale=False)
    w.event("referral.request", at - 59, contact_id=c.id, inviter=inviter)
    m.sent(at, c.id, kind="accept_friend", cls="service")
    w.event("referral.accepted", at, contact_id=c.id, channel=CHANNEL, tags=["referral"])
    w.event(
        "referral.invited", at, contact_id=c.id, inviter=inviter, path="friend_request", room_id=""
    )
    m.sent(at + 30, c.id, cls="service", key="referral/welcome")
    settled = dict(contact_id=c.id, inviter=inviter, path="friend_request")
    roll = rng.random()
    if roll < 0.05:
        w.event("referral.settled", at, status="invalid", reason="not_new", **settled)
        return
    due = at + STAY + rng.uniform(0, 300)  # the 5-minute tick after the stay
    if due >= m.end_ts:
        return  # still pending at the end of the month
    w.event("referral.settled", due, status="valid", reason="", **settled)
    if roll < 0.09 and due + 3600 < m.end_ts:
        w.event(
            "referral.voided",
            due + 3600,
            contact_id=c.id,
            inviter=inviter,
            by=OPERATOR,
            was="valid",
        )


def room_joins(m: Month, inviters: list[str], rooms: list[str]) -> None:
    """Customers pulling friends into a group (the transport names the inviter): about one a
    day; most stay the 24 hours, some leave within hours (not counted)."""
    rng, w = m.rng, m.w
    if not inviters or not rooms:
        return
    for n, day in enumerate(m.days):
        for k in range(rng.choice((0, 1, 1, 2))):
            cid = f"wxid_demo_pulled_{n:03d}_{k}"
            inviter = rng.choice(inviters[:8])
            room_id = rng.choice(rooms)
            at = m.at(day)
            m.sizes[room_id] += 1
            w.event(
                "groups.join",
                at,
                contact_id=cid,
                room_id=room_id,
                members=m.sizes[room_id],
                invited=False,
                inviter=inviter,
            )
            w.event("in.member_joined", at, contact_id=cid, room_id=room_id, stale=False)
            w.event(
                "referral.invited",
                at,
                contact_id=cid,
                room_id=room_id,
                inviter=inviter,
                path="room_join",
            )
            settled = dict(contact_id=cid, inviter=inviter, path="room_join")
            if rng.random() < 0.2:
                left = at + rng.uniform(600, 6 * 3600)
                if left < m.end_ts:
                    m.sizes[room_id] -= 1
                    w.event(
                        "groups.leave",
                        left,
                        contact_id=cid,
                        room_id=room_id,
                        members=m.sizes[room_id],
                        removed=False,
                        by_us=False,
                    )
                    w.event("referral.settled", left, status="invalid", reason="left", **settled)
                continue
            due = at + STAY + rng.uniform(0, 300)
            if due < m.end_ts:
                w.event("referral.settled", due, status="valid", reason="", **settled)
