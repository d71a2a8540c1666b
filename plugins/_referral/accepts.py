"""Friend requests that carry an invite code: the accept through the governor, then the book
record (first-touch channel, consent, tags), the attribution and the greeting.

Over the daily accept cap the request waits (WeChat keeps it a few days) in the plugin's kv
as wait:<ticket>, tried again once a day inside the accept hours by the tick. A job must not
wait on the outbox, so the tick hands the accept over and finishes it at its next run; a
restart in between leaves the mark, and the accept is simply tried again (accepting twice is
harmless)."""

from __future__ import annotations

import asyncio
from typing import Any

from pond import Action, ActionClass, ActionKind, FriendRequest, Outcome

from . import flow
from .state import Ctx

WAIT = "wait:"
EXPIRE_S = 72 * 3600.0  # WeChat drops an unanswered request after about three days


def request_of(event: FriendRequest, inviter: str, known: bool, at: float) -> dict[str, Any]:
    c = event.contact
    return {
        "ticket": event.id,
        "contact_id": c.id,
        "name": c.name,
        "display": c.display,
        "inviter": inviter,
        "known": known,  # in the book before the request: not new to the brand
        "at": at,
    }


def submit(ctx: Ctx, req: dict[str, Any]) -> asyncio.Future[Outcome]:
    cid = req["contact_id"]
    return ctx.act(
        Action(
            ActionKind.ACCEPT_FRIEND,
            to=cid,
            ticket=req["ticket"],
            cls=ActionClass.SERVICE,
            contact_id=cid,
        )
    )


async def finish(ctx: Ctx, req: dict[str, Any], outcome: Outcome) -> None:
    st = ctx.state
    cid, ticket = req["contact_id"], req["ticket"]
    if outcome.reason == "erased":
        st.kv.delete(WAIT + ticket)
        return  # their data was erased meanwhile: leave no new trace
    if outcome.status == "sent":
        st.kv.delete(WAIT + ticket)
        await accepted(ctx, req)
    elif outcome.reason.startswith("cap:"):
        st.kv.set(WAIT + ticket, {**req, "tried": ctx.now.date().isoformat()})
        ctx.record("accept_waiting", contact_id=cid, reason=outcome.reason)
    else:
        st.kv.delete(WAIT + ticket)
        ctx.record("accept_failed", contact_id=cid, status=outcome.status, reason=outcome.reason)


async def accepted(ctx: Ctx, req: dict[str, Any]) -> None:
    st = ctx.state
    cfg = ctx.config
    channel = cfg.channel
    cid, inviter = req["contact_id"], req["inviter"]
    book = ctx.book
    now = ctx.now
    before = book.get(cid)
    values: dict[str, object] = {"is_friend": True}
    if req.get("name"):
        values["name"] = req["name"]
    if before is None or not before.channel:
        values["channel"] = channel  # first-touch attribution
    book.upsert(cid, now, **values)
    book.record_consent(cid, "contact", now, how="friend_request", source=f"referral:{inviter}")
    wanted = st.rules.invitee_tags
    tags = book.tag(cid, wanted, now, source="referral") if wanted else []
    ctx.rights.reapply(cid)  # erased earlier, back now: their opt-out still holds
    ctx.record("accepted", contact_id=cid, channel=channel, tags=tags)
    flow.attribute(ctx, cid, inviter, path="friend_request", known=bool(req["known"]))
    if cfg.greet:
        await ctx.send(
            cid,
            "referral/welcome",
            cls=ActionClass.SERVICE,
            name=req.get("display", ""),
            inviter_name=flow.display(ctx, inviter),
        )


async def settle(ctx: Ctx) -> None:
    """Finish the accepts the previous tick handed over."""
    st = ctx.state
    done = [(t, f, r) for t, (f, r) in st.inflight.items() if f.done()]
    for ticket, future, req in done:
        del st.inflight[ticket]
        await finish(ctx, req, future.result())


def retry(ctx: Ctx, *, in_hours: bool, limit: int = 5) -> int:
    """Waiting requests: expired ones dropped, a few tried (once a day, in the accept hours)."""
    st = ctx.state
    now = ctx.now.timestamp()
    today = ctx.now.date().isoformat()
    tried = 0
    for key, value in st.kv.items(WAIT):
        if not isinstance(value, dict):
            st.kv.delete(key)
            continue
        if now - float(value.get("at", 0)) > EXPIRE_S:
            st.kv.delete(key)
            ctx.record("accept_expired", contact_id=value.get("contact_id", ""))
            continue
        ticket = key.removeprefix(WAIT)
        if not in_hours or tried >= limit or value.get("tried") == today or ticket in st.inflight:
            continue
        st.kv.set(key, {**value, "tried": today})
        req = {k: v for k, v in value.items() if k != "tried"}
        st.inflight[ticket] = (submit(ctx, req), req)
        tried += 1
    return tried
