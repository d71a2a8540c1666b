"""How the auto_reply plugin answers: replies that record their source, product cards,
the off-hours notice, the loop guard, the hand-off and the LLM call. decide.py says *what*
answers, the handlers in plugins/auto_reply.py *whether* now; these functions say *how*."""

from __future__ import annotations

import time
from typing import Any

from plugins._auto_reply import staff
from plugins._auto_reply.data import Product
from plugins._auto_reply.llm import blocked, plain
from plugins._auto_reply.match import skeleton
from plugins._auto_reply.state import Ctx, opening, stored_int
from pond import Action, ActionClass, ActionKind, Media, MediaKind, Message, PersonaError

LLM_FAILURES_TO_PAUSE = 3
LLM_PAUSE_S = 300.0
LLM_ALERT_EVERY_S = 3600.0
LLM_QUESTION_CHARS = 500
MUTED = "loop_muted"  # the quiet-mark of a room member the loop guard stopped answering


async def say(
    ctx: Ctx,
    event: Message,
    key: str,
    *,
    source: str,
    rule: str = "",
    media: Media | None = None,
    **variables: Any,
) -> bool:
    """Reply with `key` and record what produced it. A template that cannot render (deleted
    since load, or using a variable the bot does not pass) alerts the admins and falls back
    to the fallback key, so the customer is not left without an answer."""
    st = ctx.state
    assert st.data is not None
    name = event.sender.display
    try:
        text = _reply(ctx, event, key, media, name=name, **variables)
    except PersonaError as error:
        ctx.log.error("auto-reply template %s failed: %s", key, error)
        ctx.record("template_error", chat_id=event.chat_id, key=key)
        st.alert(ctx, error)
        if key == st.data.fallback_reply:
            return False
        key, source = st.data.fallback_reply, "fallback"
        try:
            text = _reply(ctx, event, key, None, name=name)
        except PersonaError:
            return False
    ctx.record(
        "reply",
        chat_id=event.chat_id,
        contact_id=event.sender.id,
        room_id=event.room.id if event.room else "",
        source=source,
        rule=rule,
        key=key,
    )
    cfg = ctx.config
    keep = max(cfg.loop_max_replies, cfg.loop_repeats)
    now = ctx.now.timestamp()
    st.memory.answered(sender_key(event), skeleton(event.text), now, keep)
    st.memory.replied(event.chat_id, skeleton(text), now)
    return True


def _reply(ctx: Ctx, event: Message, key: str, media: Media | None, **variables: Any) -> str:
    """Answer in the event's chat (the sender @-mentioned in a room) and return the text
    sent, which the loop guard keeps to recognise a bot sending it back."""
    room = event.room
    action = ctx.compose(
        room or event.chat_id,
        key,
        cls=ActionClass.REPLY,
        mentions=[event.sender.id] if room is not None else [],
        media=media,
        contact_id=event.sender.id,
        **variables,
    )
    ctx.act(action)
    return action.text


def sender_key(event: Message) -> str:
    """Whom the loop guard watches: a private chat, or one member of a room (several
    people asking the same thing in a group is a busy group, not a loop)."""
    return event.chat_id if event.room is None else f"{event.room.id}\x1f{event.sender.id}"


async def card(ctx: Ctx, event: Message, product: Product) -> None:
    """The product card: text (persona key) with the image, then the link card."""
    data = ctx.state.data
    assert data is not None
    key = data.guide.reply
    image = None
    if product.image:
        local = not product.image.startswith(("http://", "https://"))
        image = Media(
            MediaKind.IMAGE, path=product.image if local else "", url="" if local else product.image
        )
    link = (
        Media(MediaKind.LINK, url=product.link, title=product.name, description=product.summary)
        if product.link
        else None
    )
    sent = await say(
        ctx, event, key, source="product", rule="product:" + product.id,
        media=image or link, product=product.card(),
    )  # fmt: skip
    ctx.record("product_card", contact_id=event.sender.id, product=product.id)
    if sent and image is not None and link is not None:
        ctx.act(
            Action(
                ActionKind.SEND,
                to=event.chat_id,
                cls=ActionClass.REPLY,
                key=key,
                media=link,
                contact_id="" if event.room else event.sender.id,
            )
        )


async def off_hours(ctx: Ctx, event: Message, key: str, *, source: str) -> None:
    """The off-hours notice `key`, once per contact per closed period; the question is
    queued for the staff's morning summary either way."""
    data = ctx.state.data
    assert data is not None
    first = staff.note_night(ctx, event, period(ctx))
    if not first:
        suppressed(ctx, event, "off_hours_told", source)
        return
    if looping(ctx, event):
        return
    await say(ctx, event, key, source="off_hours", rule=source, **opening(data, ctx.now))


def period(ctx: Ctx) -> str:
    """Names the closed period we are in by the moment it ends."""
    data = ctx.state.data
    assert data is not None
    moment = data.hours.next_open(ctx.now)
    return moment.isoformat() if moment else "closed"


def suppressed(ctx: Ctx, event: Message, why: str, rule: str) -> None:
    ctx.record(
        "suppressed", chat_id=event.chat_id, contact_id=event.sender.id, reason=why, rule=rule
    )


def looping(ctx: Ctx, event: Message) -> bool:
    """Loop guard: a sender that behaves like a bot (sends our replies back, repeats the
    same message, or takes too many answers too fast) is no longer answered for a while
    and the admins are told: a private chat is paused; in a room only that member is
    muted, never the room."""
    st = ctx.state
    cfg = ctx.config
    now = ctx.now.timestamp()
    who = sender_key(event)
    if event.room is not None and st.memory.quiet(who, MUTED, now):
        suppressed(ctx, event, "loop_muted", "")
        return True
    why = st.memory.loop(
        who,
        event.chat_id,
        skeleton(event.text),
        now,
        repeats=cfg.loop_repeats,
        window_s=cfg.loop_window_min * 60,
        most=cfg.loop_max_replies,
    )
    if why is None:
        return False
    if event.room is None:
        ctx.pauses.pause(event.chat_id, minutes=cfg.loop_mute_min, reason="loop_guard")
    else:
        st.memory.hush(who, MUTED, now, cfg.loop_mute_min * 60)
    ctx.record("loop_guard", chat_id=event.chat_id, contact_id=event.sender.id, reason=why)
    ctx.log.warning(
        "loop guard (%s): %s %s muted for %.0f min",
        why,
        "chat" if event.room is None else "member of room",
        event.chat_id,
        cfg.loop_mute_min,
    )
    ctx.alert(
        "auto_reply/loop_alert",
        customer=event.sender.display,
        chat=event.sender.id,
        room=event.room.topic or event.room.id if event.room else "",
        reason=why,
        minutes=int(cfg.loop_mute_min),
    )
    return True


async def tell_staff(
    ctx: Ctx, event: Message, rule: str, *, keyword: str = "", title: str = ""
) -> None:
    """A reply promised something only a person can do: tell staff who and what."""
    st = ctx.state
    assert st.data is not None
    notified = await staff.notify(
        ctx,
        "auto_reply/staff_request",
        customer=event.sender.display,
        customer_id=event.sender.id,
        rule=rule,
        keyword=keyword,
        title=title,
        messages=st.memory.recent(event.chat_id),
        open=opening(st.data, ctx.now)["open"],
    )
    ctx.record(
        "staff_request", chat_id=event.chat_id, contact_id=event.sender.id, rule=rule,
        notified=notified,
    )  # fmt: skip


async def hand_off(ctx: Ctx, event: Message, *, reason: str, reply: str) -> None:
    st = ctx.state
    assert st.data is not None
    cfg = ctx.config
    number, new = staff.open_ticket(ctx, event, reason)
    minutes = cfg.handoff_pause_min
    ctx.pauses.pause(event.chat_id, minutes=minutes or None, reason="handoff")
    when = opening(st.data, ctx.now)
    if not when["open"]:
        staff.note_night(ctx, event, period(ctx), handoff=True)
    await say(ctx, event, reply, source="handoff", rule=reason, minutes=int(minutes), **when)
    notified = await staff.notify(
        ctx,
        "auto_reply/handoff_staff",
        ticket=number,
        customer=event.sender.display,
        customer_id=event.sender.id,
        reason=reason,
        messages=st.memory.recent(event.chat_id),
        minutes=int(minutes),
        open=when["open"],
    )
    ctx.record(
        "handoff",
        chat_id=event.chat_id,
        contact_id=event.sender.id,
        ticket=number,
        new=new,
        reason=reason,
        open=when["open"],
        notified=notified,
    )


async def ask_llm(ctx: Ctx, event: Message) -> str | None:
    """The LLM's answer, or None (off, over budget, failing, timed out, or filtered)."""
    st = ctx.state
    assert st.data is not None and st.llm is not None
    cfg = ctx.config
    now = ctx.now.timestamp()
    day = ctx.now.date().isoformat()
    who = event.sender.id

    def note(status: str, **data: object) -> None:
        ctx.record("llm", chat_id=event.chat_id, contact_id=who, status=status, **data)

    if now < st.llm_off_until:
        note("paused")
        return None
    used = stored_int(ctx.store.get("llm_used:" + day, 0))
    if used >= cfg.llm_daily_budget:
        note("budget")
        if used == cfg.llm_daily_budget:
            ctx.store.set("llm_used:" + day, used + 1)  # alert once a day
            ctx.alert("auto_reply/llm_alert", problem="budget", budget=cfg.llm_daily_budget)
        return None
    if st.memory.llm_count(day, who) >= cfg.llm_contact_daily:
        note("contact_budget")
        return None
    system = ctx.render(
        "auto_reply/llm_system",
        chat_id=event.chat_id,
        contact_id=who,
        products=[p.card() for p in st.data.catalog.products],
        max_chars=cfg.llm_max_chars,
    ).text
    ctx.store.set("llm_used:" + day, used + 1)  # counted before the call: it costs either way
    st.memory.llm_asked(day, who)
    started = time.monotonic()
    answer = await st.llm.ask(system, event.text.strip()[:LLM_QUESTION_CHARS])
    ms = int((time.monotonic() - started) * 1000)
    if answer.status != "ok":
        st.llm_failures += 1
        note(answer.status, ms=ms)
        ctx.log.warning("LLM call failed: %s after %d ms", answer.status, ms)
        if st.llm_failures >= LLM_FAILURES_TO_PAUSE:
            st.llm_failures = 0
            st.llm_off_until = now + LLM_PAUSE_S
            if now - st.llm_alerted_at >= LLM_ALERT_EVERY_S:  # an outage: tell once an hour
                st.llm_alerted_at = now
                ctx.alert(
                    "auto_reply/llm_alert", problem=answer.status, budget=cfg.llm_daily_budget
                )
        return None
    st.llm_failures = 0
    text = plain(answer.text, cfg.llm_max_chars)
    if not text or blocked(text, st.data.blocked_words, st.data.blocked_patterns):
        note("blocked", ms=ms)
        return None
    note("ok", ms=ms, chars=len(text))
    return text
