"""What auto_reply answers a message with: one decision, in stages that follow the live
routes' order (hand-off words, a call to action, a rule or the product guide, the last
resort). Each live route's filter runs its stage and hands the Decision to its handler
(ctx.matched), so a message is matched against the rules once; the operator's 试回复 runs
all the stages in a row (`decide`), so the preview cannot drift from what customers get.

Only *what* answers is decided here. Whether it is said now (cooldowns, the fallback
window, the loop guard, "told once per closed period") depends on what was said before:
the handlers check that, and the preview must not touch it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plugins._auto_reply import staff
from plugins._auto_reply.data import Product, Rule
from plugins._auto_reply.match import normalize, scope_of
from plugins._auto_reply.offers import Offer
from plugins._auto_reply.state import Ctx
from pond import Message, MessageType

# What the last resort answers; OTHER (system notices, revoked messages...) is not asked.
FALLBACK_TYPES = frozenset(MessageType) - {MessageType.OTHER}


@dataclass(frozen=True, slots=True)
class Asked:
    """A message as the decision sees it: a customer's, or the operator's sample text."""

    raw: str
    text: str  # normalized (match.normalize)
    type: MessageType = MessageType.TEXT
    scope: str = "private"  # private | room_mention | room
    room_id: str = ""
    # Whose receipt of a call to action counts (the contact, or the room); None: the
    # operator's preview, which shows what someone who received it would get.
    recipient: str | None = None

    @classmethod
    def of(cls, event: Message) -> Asked:
        room = event.room
        return cls(
            raw=event.text,
            text=normalize(event.text) if event.type is MessageType.TEXT else "",
            type=event.type,
            scope=scope_of(room is None, event.mentions_self),
            room_id=room.id if room is not None else "",
            recipient=room.id if room is not None else event.sender.id,
        )

    @classmethod
    def sample(cls, text: str) -> Asked:
        """A customer saying `text` in a private chat (the operator's 试回复)."""
        return cls(raw=text, text=normalize(text))


@dataclass(frozen=True, slots=True)
class Decision:
    source: str  # handoff | cta | product | rule | off_hours | llm | fallback
    key: str  # the reply's persona key ("" when the LLM writes the answer)
    rule: str = ""  # what answers: a rule id, "cta:<job>", "product:<id>", "fallback"
    found: Rule | None = None
    products: tuple[Product, ...] = ()
    offer: Offer | None = None
    word: str = ""  # the call to action's word, or the rule's word the customer used
    notify: bool = False  # the reply promises a person's action: tell staff after it
    unstaffed: bool = False  # it would, but nobody can be told: a plain acknowledgement


Stage = Callable[[Ctx, Asked], Decision | None]


def handoff_words(ctx: Ctx, asked: Asked) -> Decision | None:
    """The hand-off words of rules.toml ([handoff]), in a private chat."""
    data = ctx.state.data
    if (
        data is None
        or asked.type is not MessageType.TEXT
        or asked.scope != "private"
        or not data.handoff.wanted(asked.text)
    ):
        return None
    return Decision("handoff", data.handoff.reply)


def call_to_action(ctx: Ctx, asked: Asked) -> Decision | None:
    """The word a recent broadcast or post asked its recipients to reply with."""
    st = ctx.state
    if st.data is None or asked.type is not MessageType.TEXT:
        return None
    found = st.offers.find(ctx, asked.raw, asked.recipient)
    if found is None:
        return None
    offer, word = found
    unstaffed = offer.notify and not staff.targets(ctx)  # nobody to follow up: promise nothing
    key = st.data.fallback_reply if unstaffed else offer.answer
    return Decision(
        "cta",
        key,
        rule="cta:" + offer.job,
        offer=offer,
        word=word,
        notify=offer.notify and key == offer.answer,
        unstaffed=unstaffed,
    )


def rule_or_guide(ctx: Ctx, asked: Asked) -> Decision | None:
    """The first rule (by priority) or the product guide that answers the text."""
    st = ctx.state
    data = st.data
    if data is None or asked.type is not MessageType.TEXT:
        return None
    is_open = data.hours.is_open(ctx.now)
    choice = st.choose(asked.text, asked.scope, asked.room_id, is_open)
    if choice is None:
        return None
    rule, products = choice
    if products:
        return Decision(
            "product", data.guide.reply, rule="product:" + products[0].id, products=tuple(products)
        )
    assert rule is not None
    if rule.handoff:
        return Decision("handoff", rule.reply, rule=rule.id, found=rule)
    word = next((w for w in rule.any if w in asked.text), "")  # "普洱" of "有没有普洱"
    key = rule.reply
    if rule.hours == "open" and not is_open:
        if not rule.off_hours_reply:
            return Decision("off_hours", data.off_hours_reply, rule=rule.id, found=rule)
        key = rule.off_hours_reply
    unstaffed = rule.notify and not staff.targets(ctx)
    if unstaffed:  # nobody to do what the copy promises: do not promise it
        key = data.fallback_reply
    return Decision(
        "rule",
        key,
        rule=rule.id,
        found=rule,
        word=word,
        notify=rule.notify and key != data.fallback_reply,
        unstaffed=unstaffed,
    )


def last_resort(ctx: Ctx, asked: Asked, *, llm: bool = True) -> Decision | None:
    """Anything else: the LLM (private text, when on), the off-hours notice (private, when
    closed), else the fallback acknowledgement. `llm=False`: what follows an LLM that
    gave no answer."""
    st = ctx.state
    data = st.data
    if data is None or asked.type not in FALLBACK_TYPES:
        return None
    if asked.type is MessageType.TEXT and not asked.text:
        return None
    private = asked.scope == "private"
    is_open = data.hours.is_open(ctx.now)
    text = asked.type is MessageType.TEXT
    if llm and st.llm is not None and private and text and (is_open or ctx.config.llm_off_hours):
        return Decision("llm", "", rule="llm")
    if private and not is_open:
        return Decision("off_hours", data.off_hours_reply, rule="fallback")
    return Decision("fallback", data.fallback_reply, rule="fallback")


STAGES: tuple[Stage, ...] = (handoff_words, call_to_action, rule_or_guide, last_resort)


def decide(ctx: Ctx, asked: Asked) -> Decision | None:
    """What the live routes would answer, stage by stage in their order."""
    for stage in STAGES:
        found = stage(ctx, asked)
        if found is not None:
            return found
    return None
