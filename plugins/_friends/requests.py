"""Friend requests: the rules (block, channel code, keyword, else review), the accept, the
book record with channel attribution and consent, and the greeting after a short delay.

Durable marks in the plugin's kv (all small, all transient):
  review:<ticket>     waiting for an admin (accept / reject / block)
  accepting:<ticket>  an accept handed to the outbox (recovered as "waiting" after a crash)
  waiting:<ticket>    refused by the daily accept cap: retried once a day
  greet:<contact>     a greeting due (state waiting) or handed to the outbox (state sending;
                      never sent again after a crash: at most once)
  block:<contact>     blocked by an admin (blocked_hash:<fingerprint> once erased)"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from plugins._friends import followups
from plugins._friends.rules import Channel
from plugins._friends.state import Ctx
from pond import Action, ActionClass, ActionKind, FriendRequest, Outcome

log = logging.getLogger("pond.plugins.friends")

REVIEW = "review:"
ACCEPTING = "accepting:"
WAITING = "waiting:"
GREET = "greet:"
BLOCK = "block:"
BLOCKED_HASH = "blocked_hash:"


@dataclass(frozen=True)
class Decision:
    verdict: str  # accept | block | review
    rule: str  # channel | keyword | block_id | block_word | none
    channel: Channel | None = None
    tags: tuple[str, ...] = ()


def request_of(event: FriendRequest, at: float) -> dict[str, Any]:
    c = event.contact
    return {
        "ticket": event.id,
        "contact_id": c.id,
        "name": c.name,
        "alias": c.alias,
        "hello": event.hello[:200],
        "at": at,
    }


def is_blocked(ctx: Ctx, contact_id: str) -> bool:
    st = ctx.state
    if contact_id in st.data.requests.block_ids or st.kv.get(BLOCK + contact_id) is not None:
        return True
    # A blocked contact whose data was erased is remembered as a keyed hash only.
    return st.kv.get(BLOCKED_HASH + ctx.rights.fingerprint(contact_id)) is not None


def decide(ctx: Ctx, contact_id: str, hello: str) -> Decision:
    st = ctx.state
    rules = st.data.requests
    if is_blocked(ctx, contact_id):
        return Decision("block", "block_id")
    text = hello.strip()
    low = text.lower()
    if any(w.lower() in low for w in rules.block_words):
        return Decision("block", "block_word")
    channel = st.data.channels.find(text) if text else None
    if channel is not None:
        return Decision("accept", "channel", channel, (channel.tag, *channel.tags))
    if any(w.lower() in low for w in rules.accept_words):
        return Decision("accept", "keyword", None, rules.accept_tags)
    return Decision("review", "none")


async def handle(event: FriendRequest, ctx: Ctx) -> None:
    req = request_of(event, ctx.now.timestamp())
    decision = decide(ctx, event.contact.id, event.hello)
    code = decision.channel.code if decision.channel else ""
    # The hello is a message: never recorded, only the decision and the rule.
    ctx.record(
        "request",
        contact_id=event.contact.id,
        verdict=decision.verdict,
        rule=decision.rule,
        channel=code,
    )
    if decision.verdict == "block":
        log.info("friend request from %s ignored (%s)", event.contact.id, decision.rule)
        return
    if decision.verdict == "review":
        await queue_review(ctx, req)
        return
    await accept(
        ctx, req, how=decision.rule, source=decision.rule, channel=code, tags=decision.tags
    )


# -- accept and greet -------------------------------------------------------------------------
# Handlers and chat commands await the accept's outcome (the outbox runs meanwhile). Jobs
# must not wait on the outbox (the tick hands accepts over and settles them at the next
# tick), and nothing awaits a greeting: it is handed over, and its outcome recorded.


def _mark(
    req: dict[str, Any], how: str, source: str, channel: str, tags: tuple[str, ...]
) -> dict[str, Any]:
    return {**req, "how": how, "source": source, "channel": channel, "tags": list(tags)}


def _submit_accept(ctx: Ctx, mark: dict[str, Any]) -> asyncio.Future[Outcome]:
    st = ctx.state
    cid = mark["contact_id"]
    st.kv.set(ACCEPTING + mark["ticket"], {**mark, "run": st.run})
    return ctx.act(
        Action(
            ActionKind.ACCEPT_FRIEND,
            to=cid,
            ticket=mark["ticket"],
            cls=ActionClass.SERVICE,
            contact_id=cid,
        )
    )


async def accept(
    ctx: Ctx,
    req: dict[str, Any],
    *,
    how: str,
    source: str,
    channel: str = "",
    tags: tuple[str, ...] = (),
) -> Outcome:
    """Accept through the governor (paced, capped); on success record, tag and greet after a
    short human-like pause."""
    mark = _mark(req, how, source, channel, tags)
    outcome = await _submit_accept(ctx, mark)
    await _settle(ctx, mark, outcome, pause=True)
    return outcome


def accept_later(ctx: Ctx, mark: dict[str, Any]) -> None:
    """From a job: hand the accept over; settle_accepts() finishes it at a later tick."""
    st = ctx.state
    st.inflight[mark["ticket"]] = (_submit_accept(ctx, mark), mark)


async def settle_accepts(ctx: Ctx) -> int:
    st = ctx.state
    done = [(t, f, m) for t, (f, m) in st.inflight.items() if f.done()]
    for ticket, future, mark in done:
        del st.inflight[ticket]
        await _settle(ctx, mark, future.result(), pause=False)
    return len(done)


async def _settle(ctx: Ctx, mark: dict[str, Any], outcome: Outcome, *, pause: bool) -> None:
    st = ctx.state
    ticket, cid = mark["ticket"], mark["contact_id"]
    st.kv.delete(ACCEPTING + ticket)
    if outcome.reason == "erased":
        return  # their data was erased meanwhile: leave no new trace
    if outcome.status == "sent":
        accepted(ctx, mark)
        if st.config.greet:
            name = mark.get("alias") or mark.get("name") or ""
            await greet(ctx, cid, name=name, channel=mark["channel"], pause=pause)
    elif outcome.reason.startswith("cap:"):
        # Over today's accept cap: WeChat keeps the request for a few days, so try tomorrow.
        st.kv.set(WAITING + ticket, {**mark, "tried": ctx.now.date().isoformat()})
        ctx.record("accept_waiting", contact_id=cid, reason=outcome.reason)
    else:
        ctx.record("accept_failed", contact_id=cid, status=outcome.status, reason=outcome.reason)


def accepted(ctx: Ctx, mark: dict[str, Any]) -> None:
    """The book record: friend, name, first-touch channel, consent, tags; follow-ups."""
    book = ctx.book
    now = ctx.now
    cid, channel, how = mark["contact_id"], mark["channel"], mark["how"]
    before = book.get(cid)
    values: dict[str, Any] = {"is_friend": True}
    if mark.get("name"):
        values["name"] = mark["name"]
    if mark.get("alias"):
        values["alias"] = mark["alias"]
    if channel and (before is None or not before.channel):
        values["channel"] = channel  # first-touch attribution; later channels stay as tags
    book.upsert(cid, now, **values)
    if before is not None and before.stage == "churned":
        book.set_stage(cid, "new", now, source="re-added")
    consent_source = f"channel:{channel}" if channel else mark["source"]
    book.record_consent(cid, "contact", now, how="friend_request", source=consent_source)
    ctx.record(
        "consent", contact_id=cid, purpose="contact", how="friend_request", source=consent_source
    )
    tags = tuple(mark.get("tags", ()))
    new_tags = book.tag(cid, tags, now, source=f"friends:{how}") if tags else []
    ctx.record("accepted", contact_id=cid, rule=how, channel=channel, tags=new_tags)
    ctx.rights.reapply(cid)  # erased earlier, back now: their opt-out still holds
    followups.enrol(ctx, cid, "friend_added", now.timestamp())


def greet_vars(ctx: Ctx, name: str, channel: str) -> dict[str, Any]:
    st = ctx.state
    ch = st.data.channels.get(channel) if channel else None
    return {"name": name, "channel": channel, "channel_name": ch.name if ch else ""}


async def greet(ctx: Ctx, cid: str, *, name: str, channel: str, pause: bool = True) -> None:
    """The welcome, in the persona's voice (a persona layer for tag channel:<code> overrides
    it per channel), after a short pause like a person's."""
    st = ctx.state
    key = GREET + cid
    delay = ctx.rng.uniform(st.config.greet_delay_s.low, st.config.greet_delay_s.high)
    due = ctx.now.timestamp() + (delay if pause else 0.0)
    st.kv.set(
        key, {"due": due, "state": "waiting", "name": name, "channel": channel, "run": st.run}
    )
    if pause:
        await ctx.clock.sleep(delay)
    await send_greeting(ctx, cid, name=name, channel=channel)


async def send_greeting(ctx: Ctx, cid: str, *, name: str, channel: str) -> None:
    st = ctx.state
    key = GREET + cid
    if st.kv.get(key) is None:
        return  # erased meanwhile
    # Marked before it is handed over: after a crash it is never sent twice.
    st.kv.set(key, {"state": "sending", "at": ctx.now.timestamp(), "run": st.run})
    future = await ctx.send(
        cid, "friends/welcome", cls=ActionClass.SERVICE, **greet_vars(ctx, name, channel)
    )

    def done(f: asyncio.Future[Outcome]) -> None:
        outcome = f.result()
        if outcome.reason == "erased":
            return  # their data was erased meanwhile: leave no new trace
        st.kv.delete(key)
        ctx.record(
            "greeted",
            contact_id=cid,
            status=outcome.status,
            reason=outcome.reason,
        )

    future.add_done_callback(done)


async def recover(ctx: Ctx) -> None:
    """After a restart: accepts that were in the outbox are tried again (accepting twice is
    harmless); greetings still waiting go out if recent; greetings that were handed to the
    outbox are never sent again (at most once)."""
    st = ctx.state
    now = ctx.now.timestamp()
    # Only marks left by an earlier run: this run's handlers may be mid-accept right now.
    for key, value in st.kv.items(ACCEPTING):
        ticket = key.removeprefix(ACCEPTING)
        if isinstance(value, dict) and value.get("run") == st.run:
            continue
        if isinstance(value, dict):
            mark = {k: v for k, v in value.items() if k != "run"}
            st.kv.set(WAITING + ticket, {**mark, "tried": ""})
        st.kv.delete(key)
    for key, value in st.kv.items(GREET):
        cid = key.removeprefix(GREET)
        if isinstance(value, dict) and value.get("run") == st.run:
            continue  # this run's greeting, still on its way
        if isinstance(value, dict) and value.get("state") == "waiting":
            if now - float(value.get("due", 0)) < 3600:
                name, channel = str(value.get("name", "")), str(value.get("channel", ""))
                await send_greeting(ctx, cid, name=name, channel=channel)
                continue
            ctx.record("greet_missed", contact_id=cid)
        else:
            ctx.record("greet_unknown", contact_id=cid)
        st.kv.delete(key)


def retry_waiting(ctx: Ctx, limit: int = 5) -> int:
    """Accepts refused by the daily cap (or approved from the command line): one try a day,
    a few per tick."""
    st = ctx.state
    if not st.config.add_hours.contains(ctx.now.time()):
        return 0  # an accept at 3 a.m. looks like a bot: wait for the day window
    today = ctx.now.date().isoformat()
    tried = 0
    for key, value in st.kv.items(WAITING):
        if tried >= limit:
            break
        if not isinstance(value, dict) or value.get("tried") == today:
            continue
        st.kv.delete(key)
        if ctx.now.timestamp() - float(value.get("at", 0)) > st.config.review_expire_h * 3600:
            ctx.record("accept_expired", contact_id=value.get("contact_id", ""))
            continue
        tried += 1
        mark = {k: v for k, v in value.items() if k != "tried"}
        accept_later(ctx, mark)
    return tried


def approve(ctx: Ctx, req: dict[str, Any], *, how: str, source: str, tags: tuple[str, ...]) -> None:
    """An accept decided where nothing can be sent (the command line): the bot's tick does it."""
    st = ctx.state
    st.kv.set(WAITING + req["ticket"], {**_mark(req, how, source, "", tags), "tried": ""})


# -- the review queue ---------------------------------------------------------------------------
def reviews(ctx: Ctx) -> list[dict[str, Any]]:
    st = ctx.state
    items = [v for _, v in st.kv.items(REVIEW) if isinstance(v, dict)]
    return sorted(items, key=lambda v: int(v.get("n", 0)))


def find_review(ctx: Ctx, ref: str) -> dict[str, Any] | None:
    ref = ref.strip().lstrip("#")
    for item in reviews(ctx):
        if (ref.isdigit() and int(ref) == int(item.get("n", -1))) or item["contact_id"] == ref:
            return item
    return None


def drop_review(ctx: Ctx, item: dict[str, Any]) -> None:
    st = ctx.state
    st.kv.delete(REVIEW + item["ticket"])


async def queue_review(ctx: Ctx, req: dict[str, Any]) -> None:
    st = ctx.state
    cid = req["contact_id"]
    existing = find_review(ctx, cid)
    if existing is not None:
        # People send a request again when nobody answers: keep one entry, no new alert.
        drop_review(ctx, existing)
        st.kv.set(REVIEW + req["ticket"], {**req, "n": existing["n"]})
        ctx.record("review_updated", contact_id=cid, n=existing["n"])
        return
    seq = st.kv.get("review_seq", 0)
    n = (seq if isinstance(seq, int) else 0) + 1
    st.kv.set("review_seq", n)
    st.kv.set(REVIEW + req["ticket"], {**req, "n": n})
    ctx.record("review_queued", contact_id=cid, n=n)
    if not st.data.requests.notify:
        return
    pending = len(reviews(ctx))
    ctx.alert(
        "friends/review_alert",
        n=n,
        name=req.get("alias") or req.get("name") or "",
        customer_id=cid,
        hello=req.get("hello", ""),
        pending=pending,
    )


def expire_reviews(ctx: Ctx) -> int:
    """WeChat drops unanswered requests after a few days: so do we."""
    st = ctx.state
    cutoff = ctx.now.timestamp() - st.config.review_expire_h * 3600
    gone = 0
    for item in reviews(ctx):
        if float(item.get("at", 0)) < cutoff:
            drop_review(ctx, item)
            ctx.record("review_expired", contact_id=item["contact_id"], n=item["n"])
            gone += 1
    return gone


def pending(ctx: Ctx, now: float) -> list[dict[str, Any]]:
    return [
        {
            "plugin": "friends",
            "kind": "friend_request",
            "n": item["n"],
            "ticket": item["ticket"],
            "contact_id": item["contact_id"],
            "name": item.get("alias") or item.get("name") or "",
            "hello": item.get("hello", ""),
            "at": item.get("at"),
            "age_h": round((now - float(item.get("at", now))) / 3600, 1),
        }
        for item in reviews(ctx)
    ]
