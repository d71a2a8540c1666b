"""Auto-reply (个人号自动回复): 1:1 service in the persona's voice.

Rules, business hours, hand-off words, product-guide and fallback settings are data in
persona/auto_reply/rules.toml; products in persona/auto_reply/catalog.toml. Both are
validated at start-up (a bad file stops start-up naming file, line and key) and polled for
changes (a bad edit keeps the last good version serving and alerts the admins).

Events (in route order):
- every message (observer): poll the data files; remember a private chat's last messages
  in a bounded in-memory ring buffer (AUTO_REPLY_HISTORY_SIZE per chat). That buffer is only
  for the hand-off note to staff: never persisted, never logged.
- private hand-off words (转人工/人工, data: [handoff]), priority 60: pause the chat
  (reason "handoff"), tell the customer, notify staff (admins and/or a staff room) with
  the customer and their last messages. Staff end it with the handback command, or the
  pause times out (AUTO_REPLY_HANDOFF_PAUSE_MIN); a human typing on the phone (transport
  HumanTakeover) pauses the chat in the kernel and marks the ticket answered.
- the word a recent broadcast or calendar post asked its recipients to reply with (declared
  next to the copy, see plugins/_core/cta.py), priority 110: the declared answer, for
  `days` after that person (or room) received it; staff told when it says notify.
- a message a rule or the product guide answers (private; rooms when @-mentioned, or every
  message of listed rooms for scope "room"), priority 120: the rule's persona key; the
  guide sends a product card (text, image, link) and tags the asker interest:<tag>. A rule
  with `notify = true` (its copy promises what a person does, e.g. adding to a group when
  no group is set up for invites) also tells staff, with the customer's last messages.
- anything else, in private or @-mentioning us in a room, priority 900 (last): outside
  business hours an off-hours notice once per contact per closed period, the question
  queued for the staff's morning summary; else the optional LLM answer (private text
  only); else the fallback acknowledgement at most once per AUTO_REPLY_FALLBACK_WINDOW_MIN.
Never answered: our own account and BOT_KNOWN_BOT_IDS (the kernel drops them), paused
chats (kernel), and a sender that behaves like a bot (loop guard, per sender, never per
room): it sends one of our replies back, repeats a near-identical message (digits and
punctuation aside) AUTO_REPLY_LOOP_REPEATS times, or takes more than
AUTO_REPLY_LOOP_MAX_REPLIES answers in AUTO_REPLY_LOOP_WINDOW_MIN. A private chat is then
paused with reason "loop_guard"; in a room only that member is left unanswered for
AUTO_REPLY_LOOP_MUTE_MIN; admins are alerted either way. Cooldowns are per contact and rule.
Every reply records `auto_reply.reply` with the rule, product, "fallback", "off_hours",
"handoff" or "llm" that produced it.

What answers a message is decided once, in plugins/_auto_reply/decide.py: each route's
filter runs its stage and hands the decision to its handler (ctx.matched); the operator's
试回复 runs the same stages.
Persona: the keys below, plus the keys the data names (rules.toml, catalog.toml, calls to
action), which must be under auto_reply/, broadcasts/ or calendar/ (checked at load).
Config: AUTO_REPLY_* (see AutoReplyConfig and config.example.env). The LLM's API key is
read only from the environment variable AUTO_REPLY_LLM_API_KEY and never logged.
"""

from __future__ import annotations

from typing import Any

from plugins._auto_reply import reply as answers
from plugins._auto_reply import staff
from plugins._auto_reply.config import AutoReplyConfig
from plugins._auto_reply.data import DataError, Product
from plugins._auto_reply.decide import (
    Asked,
    Decision,
    Stage,
    decide,
    handoff_words,
    last_resort,
    rule_or_guide,
)
from plugins._auto_reply.decide import call_to_action as reply_word
from plugins._auto_reply.llm import LlmClient
from plugins._auto_reply.state import Ctx, State, build_state, opening, stored_int
from pond import (
    Arg,
    Command,
    Event,
    HumanTakeover,
    Message,
    MessageType,
    PersonaError,
    Plugin,
    Problem,
    ReviewItem,
    filters,
)

__all__ = ["AutoReplyConfig", "plugin"]

plugin: Plugin[AutoReplyConfig, State] = Plugin(
    "auto_reply",
    persona=[
        "auto_reply/off_hours",
        "auto_reply/handoff",
        "auto_reply/handoff_staff",
        "auto_reply/staff_request",
        "auto_reply/handoff_expired",
        "auto_reply/handoff_list",
        "auto_reply/handback_done",
        "auto_reply/handback_unknown",
        "auto_reply/product_card",
        "auto_reply/llm_system",
        "auto_reply/llm_answer",
        "auto_reply/llm_alert",
        "auto_reply/morning_summary",
        "auto_reply/data_alert",
        "auto_reply/loop_alert",
        "auto_reply/status",
        "auto_reply/try_result",
        "core/fallback",
    ],
    # Keys named by data: the rules' replies, and the answers that broadcasts' and
    # calendar posts' calls to action declare next to their copy.
    persona_prefixes=["auto_reply/", "broadcasts/", "calendar/"],
    config=AutoReplyConfig,
    state=build_state,
    description="1:1 auto-reply: rules, product guide, business hours, hand-off, LLM fallback",
)


# -- start-up ----------------------------------------------------------------------------------


@plugin.on_startup()
async def load_data(ctx: Ctx) -> None:
    st = ctx.state
    try:
        st.load(ctx)
    except DataError as error:
        raise Problem(
            "startup.fix_file", "{error} (fix the file and start again)", error=error
        ) from None
    cfg = ctx.config
    if cfg.llm_enabled:
        if not cfg.llm_base_url or not cfg.llm_model:
            raise Problem(
                "auto_reply.llm_needs",
                "AUTO_REPLY_LLM_ENABLED needs AUTO_REPLY_LLM_BASE_URL and _MODEL",
            )
        api_key = ctx.settings.raw.get("AUTO_REPLY_LLM_API_KEY", "")
        if not api_key:
            ctx.log.warning(
                "LLM fallback on without AUTO_REPLY_LLM_API_KEY (fine for local servers)"
            )
        st.llm = LlmClient(
            cfg.llm_base_url,
            cfg.llm_model,
            api_key,
            timeout_s=cfg.llm_timeout_s,
            max_tokens=cfg.llm_max_tokens,
            temperature=cfg.llm_temperature,
        )


# -- filters: each runs one stage of the decision and hands it to the handler ------------------


def _stage(stage: Stage) -> filters.Configured:
    def make(ctx: Ctx) -> filters.Filter:
        def check(event: Event) -> Decision | None:
            return stage(ctx, Asked.of(event)) if isinstance(event, Message) else None

        return check

    return filters.configured(make)


def _decision(ctx: Ctx) -> Decision | None:
    found = ctx.matched
    return found if isinstance(found, Decision) else None


# -- routes ------------------------------------------------------------------------------------


@plugin.on_message(priority=-100, block=False, listen_in_rooms=True)
async def observe(event: Message, ctx: Ctx) -> None:
    st = ctx.state
    st.poll(ctx)
    if event.room is not None:
        return
    if event.chat_id in staff.ticket_chats(ctx):  # a hand-off whose pause ran out: close it
        await staff.expire_tickets(ctx, event.chat_id)
    if event.type is MessageType.TEXT:
        at = event.timestamp
        st.memory.remember(
            event.chat_id, at.astimezone(ctx.clock.tz) if at.tzinfo else at, event.text
        )


@plugin.on_message(filters.private(), _stage(handoff_words), priority=60)
async def handoff(event: Message, ctx: Ctx) -> None:
    decision = _decision(ctx)
    if decision is not None:
        await answers.hand_off(ctx, event, reason="keyword", reply=decision.key)


@plugin.on_message(_stage(reply_word), priority=110)
async def call_to_action(event: Message, ctx: Ctx) -> None:
    """A recipient of a broadcast or post replies with the word its copy asked for."""
    st = ctx.state
    decision = _decision(ctx)
    if st.data is None or decision is None or decision.offer is None:
        return
    offer = decision.offer
    now = ctx.now.timestamp()
    if st.memory.quiet(event.sender.id, decision.rule, now):
        answers.suppressed(ctx, event, "cooldown", decision.rule)
        return
    if answers.looping(ctx, event):
        return
    if decision.unstaffed:
        ctx.log.warning(
            "reply word of %s promises staff action, but no admin or staff room", decision.rule
        )
    sent = await answers.say(
        ctx,
        event,
        decision.key,
        source="cta",
        rule=decision.rule,
        keyword=decision.word,
        title=offer.title,
        products=_products(st),
        **opening(st.data, ctx.now),
    )
    st.memory.hush(event.sender.id, decision.rule, now, 60.0)
    if sent and decision.notify:
        await answers.tell_staff(ctx, event, "cta", keyword=decision.word, title=offer.title)


@plugin.on_message(_stage(rule_or_guide), priority=120, listen_in_rooms=True)
async def answer(event: Message, ctx: Ctx) -> None:
    st = ctx.state
    decision = _decision(ctx)
    if st.data is None or decision is None:
        return
    now = ctx.now.timestamp()
    who = event.sender.id
    if decision.products:
        await _cards(ctx, event, decision.products)
        return
    rule = decision.found
    assert rule is not None
    if decision.source == "handoff":
        await answers.hand_off(ctx, event, reason=rule.id, reply=decision.key)
        return
    if st.memory.quiet(who, rule.id, now):
        answers.suppressed(ctx, event, "cooldown", rule.id)
        return
    if decision.source == "off_hours":
        await answers.off_hours(ctx, event, decision.key, source=rule.id)
        return
    if decision.unstaffed:
        ctx.log.warning("rule %s promises staff action, but no admin or staff room", rule.id)
    if answers.looping(ctx, event):
        return
    if rule.tags:
        ctx.book.tag(who, rule.tags, ctx.now, source="auto_reply")
    sent = await answers.say(
        ctx,
        event,
        decision.key,
        source="rule",
        rule=rule.id,
        products=_products(st),
        asked=decision.word,
        **opening(st.data, ctx.now),
    )
    st.memory.hush(who, rule.id, now, rule.cooldown_s)
    if sent and decision.notify:  # promised: tell a person
        await answers.tell_staff(ctx, event, rule.id)


async def _cards(ctx: Ctx, event: Message, products: tuple[Product, ...]) -> None:
    """The product guide: tag the asker's interest, then a card per product not sent to
    them lately."""
    st = ctx.state
    assert st.data is not None
    now = ctx.now.timestamp()
    who = event.sender.id
    for product in products:
        tags = [f"interest:{tag}" for tag in product.tags]
        if tags:
            ctx.book.tag(who, tags, ctx.now, source="auto_reply")
    fresh = [p for p in products if not st.memory.quiet(who, f"product:{p.id}", now)]
    if not fresh:
        answers.suppressed(ctx, event, "cooldown", "product:" + products[0].id)
        return
    if answers.looping(ctx, event):
        return
    for product in fresh:
        await answers.card(ctx, event, product)
        st.memory.hush(who, f"product:{product.id}", now, st.data.guide.cooldown_s)


@plugin.on_message(_stage(last_resort), priority=900)
async def fallback(event: Message, ctx: Ctx) -> None:
    st = ctx.state
    cfg = ctx.config
    decision = _decision(ctx)
    if st.data is None or decision is None:
        return
    if decision.source == "llm":
        if answers.looping(ctx, event):
            return
        text = await answers.ask_llm(ctx, event)
        if text is not None:
            if not st.data.hours.is_open(ctx.now):  # staff still see the night's questions
                staff.note_night(ctx, event, answers.period(ctx))
            await answers.say(ctx, event, "auto_reply/llm_answer", source="llm", answer=text)
            return
        decision = last_resort(ctx, Asked.of(event), llm=False)
        if decision is None:
            return
    if decision.source == "off_hours":
        await answers.off_hours(ctx, event, decision.key, source="fallback")
        return
    window = "fallback" if event.room is None else "fallback@" + event.chat_id
    now = ctx.now.timestamp()
    if st.memory.quiet(event.sender.id, window, now):
        answers.suppressed(ctx, event, "fallback_window", "fallback")
        return
    if answers.looping(ctx, event):
        return
    await answers.say(ctx, event, decision.key, source="fallback")
    st.memory.hush(event.sender.id, window, now, cfg.fallback_window_min * 60)


@plugin.on_human_takeover()
async def taken_over(event: HumanTakeover, ctx: Ctx) -> None:
    if staff.mark_answered(ctx, event.chat_id):
        ctx.record("handoff_answered", chat_id=event.chat_id)


@plugin.scheduled("*/10 * * * *")
async def sweep(ctx: Ctx) -> None:
    """Reload changed data even without traffic, close timed-out hand-offs, and once the
    shop is open send the night's questions to staff."""
    st = ctx.state
    st.poll(ctx, force=True)
    await staff.expire_tickets(ctx)
    if st.data is not None and st.data.hours.is_open(ctx.now):
        await staff.morning_summary(ctx)
    today = ctx.now.date().isoformat()
    for key, _ in ctx.store.items("llm_used:"):
        if key != "llm_used:" + today:
            ctx.store.delete(key)


# -- operator commands -------------------------------------------------------------------------


@plugin.review_source()
async def open_handoffs(ctx: Ctx) -> list[ReviewItem]:
    """Customers waiting for a person (转人工): the operator's 待办 and the web 待处理."""
    return [
        ReviewItem(
            kind="handoff",
            ref=str(ticket.get("no", "")),
            at=float(ticket.get("at") or 0) or None,
            contact_id=str(ticket.get("contact_id", "")),
            detail=str(ticket.get("reason", "")),
            command="handback",
            args=(str(ticket["chat_id"]),),
            title=str(ticket.get("name", "")),
        )
        for ticket in staff.tickets(ctx)
    ]


@plugin.command("handback", keep_args=True)
async def handback(command: Command, ctx: Ctx) -> None:
    """End a hand-off (or any pause of one chat): by ticket number, contact id, or, with
    no argument, the only open hand-off."""
    wanted = command.args[0] if command.args else ""
    open_tickets = staff.tickets(ctx)
    if wanted:
        ticket = staff.find_ticket(ctx, wanted)
    else:
        ticket = open_tickets[0] if len(open_tickets) == 1 else None
    chat_id = ticket["chat_id"] if ticket else wanted
    paused = ctx.pauses.active().get(chat_id) if chat_id else None
    if ticket is None and paused is None:
        await ctx.reply(
            "auto_reply/handback_unknown", wanted=wanted, tickets=staff.listing(ctx, open_tickets)
        )
        return
    ctx.pauses.resume(chat_id)
    closed = staff.close_ticket(ctx, chat_id, "staff")
    ctx.state.memory.forget(chat_id)
    await ctx.reply(
        "auto_reply/handback_done",
        ticket=int(closed.get("no", 0)) if closed else 0,
        customer=str(closed.get("name", "")) if closed else "",
        customer_id=chat_id,
        why=paused[1] if paused else "",
    )


@plugin.command("handoffs", keep_args=True)
async def handoffs(command: Command, ctx: Ctx) -> None:
    await staff.expire_tickets(ctx)
    await ctx.reply("auto_reply/handoff_list", tickets=staff.listing(ctx, staff.tickets(ctx)))


@plugin.command("autoreply_status", keep_args=True)
async def status(command: Command, ctx: Ctx) -> None:
    st = ctx.state
    assert st.data is not None
    cfg = ctx.config
    used = stored_int(ctx.store.get("llm_used:" + ctx.now.date().isoformat(), 0))
    await ctx.reply(
        "auto_reply/status",
        rules=len(st.data.rules),
        products=len(st.data.catalog.products),
        reload_ok=bool(st.reloads.get("ok", True)),
        reload_file=str(st.reloads.get("file", "")),
        reload_line=int(st.reloads.get("line", 0)),
        llm=st.llm is not None,
        llm_used=min(used, cfg.llm_daily_budget),
        llm_budget=cfg.llm_daily_budget,
        handoffs=len(staff.tickets(ctx)),
        queued=len(ctx.store.items(staff.NIGHT)),
        **opening(st.data, ctx.now),
    )


@plugin.command("try_reply", args=[Arg("text", rest=True)])
async def try_reply(command: Command, ctx: Ctx) -> None:
    """What a customer saying <text> in a private chat would get now, decided by the same
    stages as the live routes; nothing is sent to anyone but the operator, and no cooldown
    or window is touched. A call to action's word shows what its recipients get."""
    st = ctx.state
    assert st.data is not None
    asked = Asked.sample(str(command.values.get("text") or ""))
    decision = decide(ctx, asked) or Decision("fallback", st.data.fallback_reply)
    when = opening(st.data, ctx.now)
    variables: dict[str, Any] = {
        "name": command.sender.display,
        "products": _products(st),
        "asked": decision.word,
        "minutes": int(ctx.config.handoff_pause_min),
        **when,
    }
    if decision.products:
        variables["product"] = decision.products[0].card()
    if decision.offer is not None:
        variables.update(keyword=decision.word, title=decision.offer.title)
    preview = ""
    if decision.key:
        try:
            preview = ctx.render(decision.key, chat_id=command.chat_id, **variables).text
        except PersonaError as error:
            preview = str(error)
    await ctx.reply(
        "auto_reply/try_result",
        source=decision.source,
        rule=decision.rule if decision.found is not None else "",
        reply_key=decision.key,
        products=[p.name for p in decision.products],
        title=decision.offer.title if decision.offer is not None else "",
        preview=preview,
        open=bool(when["open"]),
    )


def _products(st: State) -> list[dict[str, Any]]:
    """Rule templates see the catalog, so prices are written once (catalog.toml)."""
    return [p.card() for p in st.data.catalog.products] if st.data else []
