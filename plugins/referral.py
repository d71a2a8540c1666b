"""裂变 (referral): customers bring friends with their own invite code and poster; who brought
whom is attributed, checked against validity rules and rewarded once per threshold.

Events:
- private message 「邀请码」/「我要邀请」 (words in rules.toml): the customer's code (drawn on
  first use) as text, then their poster (Pillow + qrcode; with no CJK font the code alone
  goes out and the operators are told in Chinese). 「邀请排行」/「我的邀请」: their own count
  and rank, never anyone else's.
- FriendRequest whose hello carries a live code (priority 40, before the friends plugin's
  rules): accepted through the governor, recorded in the customer book (first-touch channel
  REFERRAL_CHANNEL, consent, rules.toml invitee_tags), greeted, attributed to the code's owner.
  Requests without a code are left to the friends plugin.
- MemberJoined with an inviter (observer): each joiner attributed to the inviter (admins'
  invites are the brand's own, not referrals). MemberLeft: a joiner leaving before the stay
  is over does not count. The book: an invitee who deletes us stops counting.
Jobs: referral.tick (every 5 minutes): rules reload, stays that are over become valid,
rewards, codes handed out by rule (rules.toml [issue] tags).
Review queue (待办): self-invites, loops and bursts (held until an operator clears or voids).
Commands (persona/referral/commands.toml): referral_top, referral_void, referral_clear.
Data: persona/referral/rules.toml. Tables: referral_codes, referral_invites, referral_rewards.
Config: REFERRAL_* (ReferralConfig, config.example.env).
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime
from pathlib import Path

from plugins._referral import accepts, commands, flow, poster
from plugins._referral.config import ReferralConfig
from plugins._referral.state import ISSUE, Ctx, ReferralState
from pond import (
    BookChange,
    Event,
    FriendRequest,
    Media,
    MediaKind,
    MemberJoined,
    MemberLeft,
    Message,
    Plugin,
    ReviewItem,
    filters,
)

log = logging.getLogger("pond.plugins.referral")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,80}$")
__all__ = ["ReferralConfig", "invite_tree", "plugin"]


def build_state(ctx: Ctx) -> ReferralState:
    """Once per App at start-up (and by tools that do not start the App): the tables, the
    last good rules file, and the book listener."""
    st = ReferralState(
        ctx.sql,
        ctx.store,
        Path(ctx.settings.bot.persona_dir),
        ctx.config.code_length,
    )
    st.load_rules()
    ctx.book.subscribe(lambda change: _book_changed(ctx, change))
    return st


plugin = Plugin(
    "referral",
    persona=[
        "referral/your_code",
        "referral/poster",
        "referral/poster_text",
        "referral/font_alert",
        "referral/welcome",
        "referral/my_rank",
        "referral/reward",
        "referral/reward_alert",
        "referral/review_alert",
        "referral/data_alert",
        "referral/code_issued",
        "referral/cmd_top",
        "referral/cmd_tree",
        "referral/cmd_voided",
        "referral/cmd_cleared",
        "referral/cmd_usage",
        "referral/cmd_unknown",
    ],
    config=ReferralConfig,
    state=build_state,
    description="invite codes and posters, attribution, validity, rewards, leaderboards",
)


def _book_changed(ctx: Ctx, change: BookChange) -> None:
    st = ctx.state
    if change.kind == "stage" and change.stage == "churned":
        flow.gone(ctx, change.contact_id)
    elif (
        change.kind == "tagged"
        and set(change.tags) & set(st.rules.issue_tags)
        and st.db.code_of(change.contact_id) is None
    ):
        st.kv.set(ISSUE + change.contact_id, {"at": change.at})


@plugin.on_startup()
async def start(ctx: Ctx) -> None:
    st = ctx.state
    problem = st.load_rules(force=True)
    if problem is not None:
        raise RuntimeError(f"{problem} (fix the file and start again)")
    cfg = ctx.config
    try:
        st.font = poster.find_font(cfg.font)
    except poster.FontMissing as missing:
        # Not fatal: codes still go out as text. Told now, not at the first customer.
        log.warning("referral: no CJK font for the poster; codes go out as text only")
        st.font_alerted = True
        ctx.alert("referral/font_alert", reason="font", where=missing.where)


# -- customers: code, poster, rank --------------------------------------------------------------
def _words(ctx: Ctx, which: str) -> filters.Filter:
    st = ctx.state

    def check(event: Event) -> bool:
        if not isinstance(event, Message) or event.room is not None:
            return False
        words = st.rules.ask if which == "ask" else st.rules.rank
        return filters.strip_mentions(event.text).lower() in {w.lower() for w in words}

    return check


def _poster_for(ctx: Ctx, cid: str, code: str, name: str) -> Path | None:
    """The customer's poster, made again when its copy or settings change. Its file name
    and PNG text carry the contact id, so erasing the contact's data deletes it (a "." and
    not a "-" after the id: pond.rights reads "-" as part of an id)."""
    st, cfg = ctx.state, ctx.config
    text = ctx.render("referral/poster_text", chat_id=cid, contact_id=cid, code=code, name=name)
    lines = [line.strip() for line in text.text.splitlines() if line.strip()]
    payload = cfg.poster_qr.replace("{code}", code) if cfg.poster_qr else code
    digest = hashlib.sha1(
        "\n".join([*lines, payload, cfg.poster_background, cfg.font]).encode()
    ).hexdigest()[:10]
    safe = cid if _SAFE_NAME.match(cid) else hashlib.sha1(cid.encode()).hexdigest()[:16]
    out = Path(ctx.settings.bot.data_dir) / "referral" / "posters" / f"{safe}.{code}.{digest}.png"
    if out.exists():
        return out
    try:
        if st.font is None:
            st.font = poster.find_font(cfg.font)
        for old in out.parent.glob(f"{safe}.{code}.*.png"):
            old.unlink(missing_ok=True)  # an earlier version of this customer's poster
        return poster.render(
            out,
            code=code,
            lines=lines,
            qr_payload=payload,
            font_path=st.font,
            background=cfg.poster_background,
            meta={"contact_id": cid},
        )
    except poster.FontMissing as missing:
        st.font = None
        reason, where = "font", missing.where
    except poster.PosterError as error:
        reason, where = "poster", str(error)
    log.error("referral poster not made (%s): the code goes out as text", reason)
    ctx.record("poster_failed", reason=reason)
    if not st.font_alerted:
        st.font_alerted = True
        ctx.alert("referral/font_alert", reason=reason, where=where)
    return None


@plugin.on_message(filters.configured(lambda ctx: _words(ctx, "ask")), priority=40)
async def ask_code(event: Message, ctx: Ctx) -> None:
    st = ctx.state
    cid = event.sender.id
    code = st.code_for(cid, ctx.now.timestamp())
    ctx.record("code_sent", contact_id=cid)
    await ctx.reply(
        "referral/your_code",
        code=code,
        name=event.sender.display,
        first_threshold=_first_threshold(st),
    )
    path = _poster_for(ctx, cid, code, event.sender.display)
    if path is not None:
        await ctx.reply("referral/poster", media=Media(MediaKind.IMAGE, path=str(path)), code=code)


@plugin.on_message(filters.configured(lambda ctx: _words(ctx, "rank")), priority=40)
async def my_rank(event: Message, ctx: Ctx) -> None:
    st = ctx.state
    count, rank = st.db.rank_of(event.sender.id)
    pending = sum(1 for i in st.db.by_inviter(event.sender.id) if i.status in flow.LIVE)
    upcoming = [r for r in st.rules.rewards if r.threshold > count]
    await ctx.reply(
        "referral/my_rank",
        name=event.sender.display,
        count=count,
        rank=rank,
        pending=pending,
        next_threshold=upcoming[0].threshold if upcoming else 0,
        next_reward=upcoming[0].name if upcoming else "",
        has_code=st.db.code_of(event.sender.id) is not None,
        stay_hours=_hours(st.rules.stay_hours),
    )


def _first_threshold(st: ReferralState) -> int:
    rewards = st.rules.rewards
    return rewards[0].threshold if rewards else 0


def _hours(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# -- attribution --------------------------------------------------------------------------------
def _carries_code(ctx: Ctx) -> filters.Filter:
    st = ctx.state

    def check(event: Event) -> bool:
        return isinstance(event, FriendRequest) and st.owner(event.hello) is not None

    return check


@plugin.on_friend_request(filters.configured(_carries_code), priority=40)
async def friend_request(event: FriendRequest, ctx: Ctx) -> None:
    st = ctx.state
    found = st.owner(event.hello)
    if found is None:
        return
    _code, inviter = found
    cid = event.contact.id
    known = ctx.book.get(cid) is not None
    # The hello is a message: never recorded, only that a code matched and whose it was.
    ctx.record("request", contact_id=cid, inviter=inviter)
    req = accepts.request_of(event, inviter, known, ctx.now.timestamp())
    await accepts.finish(ctx, req, await accepts.submit(ctx, req))


@plugin.on_member_joined(priority=1, block=False)
async def joined(event: MemberJoined, ctx: Ctx) -> None:
    inviter = event.inviter
    cfg = ctx.config
    if inviter is None or (cfg.room_ids and event.room.id not in cfg.room_ids):
        return
    if ctx.admins.is_admin(inviter.id) or inviter.id == ctx.self_id:
        return  # the brand's own staff (or the bot's own invites) filling a room
    book = ctx.book
    for member in event.members:
        known = book.get(member.id) is not None
        flow.attribute(
            ctx, member.id, inviter.id, path="room_join", room_id=event.room.id, known=known
        )


@plugin.on_member_left(priority=1, block=False)
async def left(event: MemberLeft, ctx: Ctx) -> None:
    for member in event.members:
        flow.left_room(ctx, member.id, event.room.id)


# -- jobs -----------------------------------------------------------------------------------------
@plugin.scheduled("*/5 * * * *")
async def tick(ctx: Ctx) -> None:
    problem = ctx.state.load_rules()
    if problem is not None:
        ctx.alert("referral/data_alert", problem=str(problem))
    await accepts.settle(ctx)
    accepts.retry(ctx, in_hours=ctx.config.accept_hours.contains(ctx.now.time()))
    await flow.settle(ctx)
    await _issue(ctx)


async def _issue(ctx: Ctx, limit: int = 20) -> None:
    """Codes handed out by rule (a purchase tag...): as service messages, opt-out honoured."""
    st = ctx.state
    for key, _ in st.kv.items(ISSUE)[:limit]:
        cid = key.removeprefix(ISSUE)
        st.kv.delete(key)  # before the send: at most once
        customer = ctx.book.get(cid)
        if customer is None or not customer.is_friend or ctx.outbox.ledger.is_opted_out(cid):
            continue
        code = st.code_for(cid, ctx.now.timestamp())
        name = customer.alias or customer.name
        ctx.record("code_issued", contact_id=cid)
        path = _poster_for(ctx, cid, code, name)
        media = Media(MediaKind.IMAGE, path=str(path)) if path is not None else None
        await ctx.send(
            cid,
            "referral/code_issued",
            media=media,
            code=code,
            name=name,
            first_threshold=_first_threshold(st),
        )


# -- operators: reload, review, commands --------------------------------------------------------
@plugin.on_reload()
async def reload(ctx: Ctx) -> list[str]:
    problem = ctx.state.load_rules(force=True)
    return [str(problem)] if problem is not None else []


@plugin.review_source()
async def reviews(ctx: Ctx) -> list[ReviewItem]:
    st = ctx.state
    items: list[ReviewItem] = []
    bursts: dict[str, list[float]] = {}
    for inv in st.db.to_review():
        if inv.review == "burst":
            bursts.setdefault(inv.inviter_id, []).append(inv.at)
            continue
        items.append(
            ReviewItem(
                kind=f"referral_{inv.review}",  # referral_self, referral_loop
                ref=f"invite:{inv.id}",
                at=inv.at,
                contact_id=inv.inviter_id,
                detail=inv.invitee_id,
                command="referral_clear",
                args=(inv.invitee_id,),
            )
        )
    for inviter, times in bursts.items():
        items.append(
            ReviewItem(
                kind="referral_burst",
                ref=f"burst:{inviter}",
                at=min(times),
                contact_id=inviter,
                detail=f"{len(times)}",
                command="referral_clear",
                args=(inviter,),
            )
        )
    return sorted(items, key=lambda i: i.at or 0.0)


for _name, (_handler, _keep) in commands.COMMANDS.items():
    plugin.command(_name, keep_args=_keep)(_handler)


def invite_tree(ctx: Ctx, inviter_id: str) -> list[dict[str, object]]:
    """Who this customer brought, when and how (for the CLI and other front ends:
    `invite_tree(app.context("referral"), id)`)."""
    return [
        {
            "invitee_id": i.invitee_id,
            "path": i.path,
            "room_id": i.room_id,
            "at": datetime.fromtimestamp(i.at, ctx.clock.tz).isoformat(),
            "status": i.status,
            "reason": i.reason,
        }
        for i in ctx.state.db.by_inviter(inviter_id)
    ]
