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

Persona: the keys below, plus every key the data names (declared at load).
Config: AUTO_REPLY_* (see AutoReplyConfig and config.example.env). The LLM's API key is
read only from the environment variable AUTO_REPLY_LLM_API_KEY and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugins._auto_reply import reply as answers
from plugins._auto_reply import staff
from plugins._auto_reply.data import DataError, Product, Rule
from plugins._auto_reply.llm import LlmClient
from plugins._auto_reply.match import normalize, scope_of
from plugins._auto_reply.state import State, opening, state
from pond import (
    Command,
    Context,
    Event,
    HumanTakeover,
    Message,
    MessageType,
    PersonaError,
    Plugin,
    Problem,
    filters,
)


@dataclass(frozen=True)
class AutoReplyConfig:
    fallback_window_min: float = 60.0
    handoff_pause_min: float = 120.0  # 0 = until staff hand the chat back
    staff_room_id: str = ""
    notify_admins: bool = True
    history_size: int = 8
    loop_repeats: int = 3
    loop_window_min: float = 10.0
    loop_max_replies: int = 12
    loop_mute_min: float = 60.0
    reload_s: float = 2.0
    llm_enabled: bool = False
    llm_base_url: str = ""
    llm_model: str = ""
    llm_timeout_s: float = 8.0
    llm_daily_budget: int = 200
    llm_contact_daily: int = 10
    llm_max_chars: int = 300
    llm_max_tokens: int = 400
    llm_temperature: float = 0.5
    llm_off_hours: bool = False


plugin = Plugin(
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
    config=AutoReplyConfig,
    description="1:1 auto-reply: rules, product guide, business hours, hand-off, LLM fallback",
)
FALLBACK_TYPES = frozenset(MessageType) - {MessageType.OTHER}


# -- start-up ----------------------------------------------------------------------------------


@plugin.on_startup()
async def load_data(ctx: Context) -> None:
    st = state(ctx)
    try:
        st.load(ctx)
    except DataError as error:
        raise Problem(
            "startup.fix_file", "{error} (fix the file and start again)", error=error
        ) from None
    cfg: AutoReplyConfig = ctx.config
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


# -- filters -----------------------------------------------------------------------------------


def _wants_handoff(ctx: Context) -> filters.Filter:
    st = state(ctx)

    def check(event: Event) -> bool:
        return (
            st.data is not None
            and isinstance(event, Message)
            and event.type is MessageType.TEXT
            and st.data.handoff.wanted(normalize(event.text))
        )

    return check


def _answerable(ctx: Context) -> filters.Filter:
    st = state(ctx)

    def check(event: Event) -> bool:
        return isinstance(event, Message) and _choice(ctx, st, event) is not None

    return check


def _fallback_applies(ctx: Context) -> filters.Filter:
    st = state(ctx)

    def check(event: Event) -> bool:
        return (
            st.data is not None
            and isinstance(event, Message)
            and event.type in FALLBACK_TYPES
            and (event.type is not MessageType.TEXT or bool(normalize(event.text)))
        )

    return check


def _choice(ctx: Context, st: State, event: Message) -> tuple[Rule | None, list[Product]] | None:
    if event.type is not MessageType.TEXT:
        return None
    scope = scope_of(event.room is None, event.mentions_self)
    is_open = st.data is not None and st.data.hours.is_open(ctx.now)
    room_id = event.room.id if event.room else ""
    return st.choose(normalize(event.text), scope, room_id, is_open)


# -- routes ------------------------------------------------------------------------------------


@plugin.on_message(priority=-100, block=False, listen_in_rooms=True)
async def observe(event: Message, ctx: Context) -> None:
    st = state(ctx)
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


@plugin.on_message(filters.private(), filters.configured(_wants_handoff), priority=60)
async def handoff(event: Message, ctx: Context) -> None:
    st = state(ctx)
    assert st.data is not None
    await answers.hand_off(ctx, st, event, reason="keyword", reply=st.data.handoff.reply)


def _called_to_act(ctx: Context) -> filters.Filter:
    st = state(ctx)

    def check(event: Event) -> bool:
        return (
            isinstance(event, Message)
            and event.type is MessageType.TEXT
            and st.offers.find(ctx, event) is not None
        )

    return check


@plugin.on_message(filters.configured(_called_to_act), priority=110)
async def call_to_action(event: Message, ctx: Context) -> None:
    """A recipient of a broadcast or post replies with the word its copy asked for."""
    st = state(ctx)
    found = st.offers.find(ctx, event)
    if st.data is None or found is None:
        return
    offer, word = found
    now = ctx.now.timestamp()
    rule = "cta:" + offer.job
    if st.memory.quiet(event.sender.id, rule, now):
        answers.suppressed(ctx, event, "cooldown", rule)
        return
    if answers.looping(ctx, st, event):
        return
    key = offer.answer
    if offer.notify and not staff.targets(ctx):  # nobody to follow up: promise nothing
        ctx.log.warning("reply word of %s promises staff action, but no admin or staff room", rule)
        key = st.data.fallback_reply
    sent = await answers.say(
        ctx,
        st,
        event,
        key,
        source="cta",
        rule=rule,
        keyword=word,
        title=offer.title,
        products=_products(st),
        **opening(st.data, ctx.now),
    )
    st.memory.hush(event.sender.id, rule, now, 60.0)
    if sent and offer.notify and key == offer.answer:
        await answers.tell_staff(ctx, st, event, "cta", keyword=word, title=offer.title)


@plugin.on_message(filters.configured(_answerable), priority=120, listen_in_rooms=True)
async def answer(event: Message, ctx: Context) -> None:
    st = state(ctx)
    choice = _choice(ctx, st, event)
    if st.data is None or choice is None:
        return
    rule, products = choice
    now = ctx.now.timestamp()
    who = event.sender.id
    if products:
        for product in products:
            tags = [f"interest:{tag}" for tag in product.tags]
            if tags:
                ctx.app.book.tag(who, tags, ctx.now, source="auto_reply")
        fresh = [p for p in products if not st.memory.quiet(who, f"product:{p.id}", now)]
        if not fresh:
            answers.suppressed(ctx, event, "cooldown", "product:" + products[0].id)
            return
        if answers.looping(ctx, st, event):
            return
        for product in fresh:
            await answers.card(ctx, st, event, product)
            st.memory.hush(who, f"product:{product.id}", now, st.data.guide.cooldown_s)
        return
    assert rule is not None
    if rule.handoff:
        await answers.hand_off(ctx, st, event, reason=rule.id, reply=rule.reply)
        return
    if st.memory.quiet(who, rule.id, now):
        answers.suppressed(ctx, event, "cooldown", rule.id)
        return
    key = rule.reply
    if rule.hours == "open" and not st.data.hours.is_open(ctx.now):
        if not rule.off_hours_reply:
            await answers.off_hours(ctx, st, event, source=rule.id)
            return
        key = rule.off_hours_reply
    if rule.notify and not staff.targets(ctx):
        # Nobody to do what the copy promises: do not promise it (plain acknowledgement).
        ctx.log.warning("rule %s promises staff action, but no admin or staff room", rule.id)
        key = st.data.fallback_reply
    if answers.looping(ctx, st, event):
        return
    if rule.tags:
        ctx.app.book.tag(who, rule.tags, ctx.now, source="auto_reply")
    sent = await answers.say(
        ctx,
        st,
        event,
        key,
        source="rule",
        rule=rule.id,
        products=_products(st),
        asked=_asked(rule, normalize(event.text)),
        **opening(st.data, ctx.now),
    )
    st.memory.hush(who, rule.id, now, rule.cooldown_s)
    if sent and rule.notify and key != st.data.fallback_reply:  # promised: tell a person
        await answers.tell_staff(ctx, st, event, rule.id)


@plugin.on_message(filters.configured(_fallback_applies), priority=900)
async def fallback(event: Message, ctx: Context) -> None:
    st = state(ctx)
    cfg: AutoReplyConfig = ctx.config
    assert st.data is not None
    private = event.room is None
    is_open = st.data.hours.is_open(ctx.now)
    asks_llm = private and event.type is MessageType.TEXT and (is_open or cfg.llm_off_hours)
    if asks_llm and st.llm is not None:
        if answers.looping(ctx, st, event):
            return
        text = await answers.ask_llm(ctx, st, event)
        if text is not None:
            if not is_open:  # staff still see the night's questions in the morning
                staff.note_night(ctx, event, answers.period(st, ctx))
            await answers.say(ctx, st, event, "auto_reply/llm_answer", source="llm", answer=text)
            return
    if private and not is_open:
        await answers.off_hours(ctx, st, event, source="fallback")
        return
    window = "fallback" if private else "fallback@" + event.chat_id
    now = ctx.now.timestamp()
    if st.memory.quiet(event.sender.id, window, now):
        answers.suppressed(ctx, event, "fallback_window", "fallback")
        return
    if answers.looping(ctx, st, event):
        return
    await answers.say(ctx, st, event, st.data.fallback_reply, source="fallback")
    st.memory.hush(event.sender.id, window, now, cfg.fallback_window_min * 60)


@plugin.on_human_takeover()
async def taken_over(event: HumanTakeover, ctx: Context) -> None:
    if staff.mark_answered(ctx, event.chat_id):
        ctx.record("handoff_answered", chat_id=event.chat_id)


@plugin.scheduled("*/10 * * * *")
async def sweep(ctx: Context) -> None:
    """Reload changed data even without traffic, close timed-out hand-offs, and once the
    shop is open send the night's questions to staff."""
    st = state(ctx)
    st.poll(ctx, force=True)
    await staff.expire_tickets(ctx)
    if st.data is not None and st.data.hours.is_open(ctx.now):
        await staff.morning_summary(ctx)
    today = ctx.now.date().isoformat()
    for key, _ in ctx.store.items("llm_used:"):
        if key != "llm_used:" + today:
            ctx.store.delete(key)


# -- operator commands -------------------------------------------------------------------------


@plugin.command("handback", keep_args=True)
async def handback(command: Command, ctx: Context) -> None:
    """End a hand-off (or any pause of one chat): by ticket number, contact id, or, with
    no argument, the only open hand-off."""
    wanted = command.args[0] if command.args else ""
    open_tickets = staff.tickets(ctx)
    if wanted:
        ticket = staff.find_ticket(ctx, wanted)
    else:
        ticket = open_tickets[0] if len(open_tickets) == 1 else None
    chat_id = ticket["chat_id"] if ticket else wanted
    paused = ctx.app.pauses.active().get(chat_id) if chat_id else None
    if ticket is None and paused is None:
        await ctx.reply(
            "auto_reply/handback_unknown", wanted=wanted, tickets=staff.listing(ctx, open_tickets)
        )
        return
    ctx.app.pauses.resume(chat_id)
    closed = staff.close_ticket(ctx, chat_id, "staff")
    state(ctx).memory.forget(chat_id)
    await ctx.reply(
        "auto_reply/handback_done",
        ticket=int(closed.get("no", 0)) if closed else 0,
        customer=str(closed.get("name", "")) if closed else "",
        customer_id=chat_id,
        why=paused[1] if paused else "",
    )


@plugin.command("handoffs", keep_args=True)
async def handoffs(command: Command, ctx: Context) -> None:
    await staff.expire_tickets(ctx)
    await ctx.reply("auto_reply/handoff_list", tickets=staff.listing(ctx, staff.tickets(ctx)))


@plugin.command("autoreply_status", keep_args=True)
async def status(command: Command, ctx: Context) -> None:
    st = state(ctx)
    assert st.data is not None
    cfg: AutoReplyConfig = ctx.config
    used = int(ctx.store.get("llm_used:" + ctx.now.date().isoformat(), 0))  # type: ignore[call-overload]
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


@plugin.command("try_reply")
async def try_reply(command: Command, ctx: Context) -> None:
    """What a customer saying <text> in a private chat would get now; nothing is sent to
    anyone but the operator, and no cooldown or window is touched."""
    st = state(ctx)
    assert st.data is not None
    text = normalize(command.rest)
    when = opening(st.data, ctx.now)
    source, rule, key = "fallback", "", st.data.fallback_reply
    variables: dict[str, Any] = {"name": command.sender.display, "products": _products(st), **when}
    choice = st.choose(text, "private", "", bool(when["open"])) if text else None
    products: list[str] = []
    if text and st.data.handoff.wanted(text):
        source, key = "handoff", st.data.handoff.reply
    elif choice is not None and choice[1]:
        source, rule, key = "product", choice[1][0].id, st.data.guide.reply
        products = [p.name for p in choice[1]]
        variables["product"] = choice[1][0].card()
    elif choice is not None and choice[0] is not None:
        found = choice[0]
        variables["asked"] = _asked(found, text)
        source, rule, key = ("handoff" if found.handoff else "rule"), found.id, found.reply
        if found.hours == "open" and not when["open"]:
            source, key = "off_hours", found.off_hours_reply or st.data.off_hours_reply
    elif not when["open"] and not (st.llm and ctx.config.llm_off_hours):
        source, key = "off_hours", st.data.off_hours_reply
    elif st.llm is not None:
        source, key = "llm", ""
    if source == "handoff":
        variables["minutes"] = int(ctx.config.handoff_pause_min)
    preview = ""
    if key:
        try:
            preview = st.context(ctx).render(key, chat_id=command.chat_id, **variables).text
        except PersonaError as error:
            preview = str(error)
    await ctx.reply(
        "auto_reply/try_result",
        source=source,
        rule=rule,
        reply_key=key,
        products=products,
        preview=preview,
        open=bool(when["open"]),
    )


def _asked(rule: Rule, text: str) -> str:
    """The rule's word the customer used ("普洱" of "有没有普洱"), for the reply to echo."""
    return next((word for word in rule.any if word in text), "")


def _products(st: State) -> list[dict[str, Any]]:
    """Rule templates see the catalog, so prices are written once (catalog.toml)."""
    return [p.card() for p in st.data.catalog.products] if st.data else []
