"""Who a campaign reaches, who it leaves out and why, and the journal rows it becomes.

The same function serves the dry run (nothing written), the confirmation and the start, so
what the operator saw is computed exactly as what is sent. Exclusions are decided in this
order, each person counted once under the first reason: unknown (not in the customer book,
or a room never seen), opt_out (退订), not_friend, churned (a churned tag or stage), frequency
(marketing received within OUTBOX_MARKETING_MIN_INTERVAL_H of the planned start).

The governor checks opt-out and frequency again at each send: the dry run is a forecast,
the journal is the truth."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from pond import (
    Action,
    ActionClass,
    Context,
    Media,
    MediaKind,
    Mode,
    Room,
    Segment,
    capabilities,
)

from .spec import Spec

REASONS = ("unknown", "opt_out", "not_friend", "churned", "frequency")
EXAMPLES = 5  # ids kept per exclusion reason, for the operator to check by hand
# Words the customer book derives for segments besides real tags (pond.customers).
DERIVED = frozenset({"opted_out", "friend", "churned"})
DERIVED_PREFIXES = ("stage:", "channel:")


@dataclass(frozen=True)
class Recipient:
    id: str
    name: str = ""
    tags: frozenset[str] = frozenset()
    room: bool = False


@dataclass
class Audience:
    candidates: int = 0  # distinct ids the campaign names (before exclusions)
    eligible: list[Recipient] = field(default_factory=list)
    excluded: dict[str, list[str]] = field(default_factory=dict)  # reason -> ids
    duplicates: int = 0
    unknown_tags: list[str] = field(default_factory=list)  # segment tags nobody has (typos?)

    def counts(self) -> dict[str, int]:
        return {reason: len(self.excluded.get(reason, [])) for reason in REASONS}

    def snapshot(self) -> dict[str, object]:
        """What is kept on the campaign record when it starts (JSON, bounded size)."""
        return {
            "candidates": self.candidates,
            "eligible": len(self.eligible),
            "excluded": {r: n for r, n in self.counts().items() if n},
            "examples": {r: ids[:EXAMPLES] for r, ids in self.excluded.items() if ids},
            "duplicates": self.duplicates,
        }


def resolve(ctx: Context, spec: Spec, *, at: float, churned_tags: Iterable[str]) -> Audience:
    """The audience as of `at` (the planned start: frequency is judged then)."""
    audience = Audience(duplicates=spec.duplicates)
    if spec.audience == "rooms":
        return _rooms(ctx, spec, audience)
    if spec.audience == "segment":
        # The book decides what a segment means (tags, and any words it derives).
        ids = ctx.book.select(spec.segment)
        audience.unknown_tags = unknown_tags(ctx, Segment.parse(spec.segment))
    else:
        ids = list(spec.ids)
    audience.candidates = len(ids)
    opted_out = {cid for cid, _ in ctx.ledger.opted_out()}
    churned = frozenset(churned_tags)
    interval = ctx.settings.outbox.marketing_min_interval_h * 3600
    for cid in ids:
        reason, recipient = _check(ctx, cid, opted_out, churned, interval, at)
        if recipient is not None:
            audience.eligible.append(recipient)
        else:
            audience.excluded.setdefault(reason, []).append(cid)
    return audience


def unknown_tags(ctx: Context, segment: Segment) -> list[str]:
    """Tags of the expression no contact has: usually a typo ("vipp"), which would quietly
    shrink or widen the audience. Words the book derives are not tags and never flagged."""
    everyone = ctx.book.all_tags()
    known: set[str] = set().union(*everyone.values()) if everyone else set()
    return sorted(
        t for t in segment.tags - known if t not in DERIVED and not t.startswith(DERIVED_PREFIXES)
    )


def _check(
    ctx: Context, cid: str, opted_out: set[str], churned: frozenset[str], interval: float, at: float
) -> tuple[str, Recipient | None]:
    customer = ctx.book.get(cid)
    if customer is None:
        return "unknown", None
    if cid in opted_out:
        return "opt_out", None
    if not customer.is_friend:
        return "not_friend", None
    if customer.stage == "churned" or customer.tags & churned:
        return "churned", None
    last = ctx.ledger.last_marketing(cid)
    if interval > 0 and last is not None and at - last < interval:
        return "frequency", None
    return "", Recipient(cid, customer.name, customer.tags)


def _rooms(ctx: Context, spec: Spec, audience: Audience) -> Audience:
    audience.candidates = len(spec.ids)
    for room in spec.ids:
        # A room id the account has never seen traffic from is most likely a typo, or a
        # group the account is no longer in.
        seen = ctx.is_room(room) or bool(ctx.sql.events(chat_id=room, limit=1))
        if seen:
            audience.eligible.append(Recipient(room, room=True))
        else:
            audience.excluded.setdefault("unknown", []).append(room)
    return audience


def render(ctx: Context, spec: Spec, recipient: Recipient, *, chat_id: str | None = None) -> str:
    """The recipient's text: their layer (VIP...), their name, the campaign's variables.
    Dry runs pass another chat_id so a sample never changes which variant the real send
    picks (variants avoid repeating the last one seen in a chat)."""
    return ctx.render(
        spec.copy,
        chat_id=chat_id or recipient.id,
        contact_id=None if recipient.room else recipient.id,
        room_id=recipient.id if recipient.room else None,
        name=recipient.name if personal(ctx) else "",
        **spec.vars,
    ).text


def personal(ctx: Context) -> bool:
    """False where a broadcast becomes a task staff confirm (企业微信 群发助手): the platform
    sends one text to everyone in a task, so the copy is not personalised by name there
    (one text per persona layer, e.g. VIP and regular, rather than one task per customer)."""
    return ctx.mode(capabilities.BROADCAST) is not Mode.STAFF_CONFIRM


def media_of(spec: Spec) -> Media | None:
    m = spec.media
    if not m:
        return None
    return Media(
        kind=MediaKind(m["kind"]),
        path=m.get("path", ""),
        url=m.get("url", ""),
        title=m.get("title", ""),
        description=m.get("description", ""),
    )


def actions(ctx: Context, spec: Spec, recipients: Iterable[Recipient]) -> list[Action]:
    """One marketing send per recipient, rendered now (the journal keeps the text)."""
    media = media_of(spec)
    if not personal(ctx):
        return _per_layer(ctx, spec, recipients, media)
    return [
        ctx.compose(
            Room(r.id) if r.room else r.id,
            spec.copy,
            cls=ActionClass.MARKETING,
            media=media,
            job=spec.job,
            name=r.name,
            **spec.vars,
        )
        for r in recipients
    ]


def _per_layer(
    ctx: Context, spec: Spec, recipients: Iterable[Recipient], media: Media | None
) -> list[Action]:
    """One text per persona layer, addressed to each of its recipients."""
    made: dict[str, Action] = {}
    found = []
    for r in recipients:
        contact = None if r.room else r.id
        room = r.id if r.room else None
        layer = ctx.persona.layers_for(contact_id=contact, room_id=room, tags=r.tags)[0]
        if layer not in made:
            made[layer] = ctx.compose(
                Room(r.id) if r.room else r.id,
                spec.copy,
                cls=ActionClass.MARKETING,
                media=media,
                job=spec.job,
                name="",
                **spec.vars,
            )
        found.append(replace(made[layer], to=r.id, contact_id=contact or ""))
    return found
