"""Operator commands of the friends plugin (registered in plugins/friends.py; Chinese names in
persona/friends/commands.toml). Every answer is a persona key in the service voice; an
unknown contact id or a wrong argument gets a clear answer, never an exception.

Tagging, look-up, export and deletion of a contact are the admin plugin's commands (they
use the customer book and pond.rights)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from plugins._friends import adds, csvio, followups, requests
from plugins._friends.state import Ctx
from pond import STAGES, Command, Media, MediaKind, Segment, SegmentError, check_tag

log = logging.getLogger("pond.plugins.friends")


async def say(ctx: Ctx, key: str, **variables: Any) -> None:
    """Answer the operator (early returns read `return await say(...)`)."""
    await ctx.reply(key, **variables)


async def usage(cmd: Command, ctx: Ctx) -> None:
    info = ctx.commands.catalog.info(cmd.name)
    await ctx.reply("friends/cmd_usage", command=info.display, usage=info.usage or info.display)


async def known(cmd: Command, ctx: Ctx, contact_id: str) -> bool:
    if ctx.book.exists(contact_id):
        return True
    await ctx.reply("friends/cmd_unknown_contact", customer_id=contact_id)
    return False


def _when(ctx: Ctx, ts: float | None) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts, ctx.clock.tz).strftime("%Y-%m-%d %H:%M") if ts else ""


# -- the review queue -------------------------------------------------------------------------
async def list_requests(cmd: Command, ctx: Ctx) -> None:
    items = requests.pending(ctx, ctx.now.timestamp())
    await ctx.reply("friends/cmd_requests", items=items, count=len(items))


async def accept(cmd: Command, ctx: Ctx) -> None:
    if not cmd.args:
        return await usage(cmd, ctx)
    item = requests.find_review(ctx, cmd.args[0])
    if item is None:
        return await say(ctx, "friends/cmd_no_request", ref=cmd.args[0])
    tags = list(cmd.args[1:])
    try:
        for tag in tags:
            check_tag(tag)
    except ValueError as error:
        return await say(ctx, "friends/cmd_bad_input", reason=str(error))
    requests.drop_review(ctx, item)
    name = item.get("alias") or item.get("name") or ""
    await ctx.reply("friends/cmd_accepting", n=item["n"], name=name, customer_id=item["contact_id"])
    req = {k: item[k] for k in ("ticket", "contact_id", "name", "alias", "hello", "at")}
    source = f"admin:{cmd.sender.id}"
    if cmd.origin == "cli":  # nothing can be sent from here: the running bot accepts it
        requests.approve(ctx, req, how="admin", source=source, tags=tuple(tags))
        return
    outcome = await requests.accept(ctx, req, how="admin", source=source, tags=tuple(tags))
    if outcome.status != "sent":
        await ctx.reply(
            "friends/cmd_accept_failed",
            n=item["n"],
            name=name,
            customer_id=item["contact_id"],
            reason=outcome.reason or outcome.status,
        )


async def reject(cmd: Command, ctx: Ctx) -> None:
    if not cmd.args:
        return await usage(cmd, ctx)
    item = requests.find_review(ctx, cmd.args[0])
    if item is None:
        return await say(ctx, "friends/cmd_no_request", ref=cmd.args[0])
    requests.drop_review(ctx, item)
    ctx.record("review_rejected", contact_id=item["contact_id"], n=item["n"])
    await ctx.reply(
        "friends/cmd_rejected",
        n=item["n"],
        name=item.get("alias") or item.get("name") or "",
        customer_id=item["contact_id"],
    )


async def block(cmd: Command, ctx: Ctx, on: bool) -> None:
    st = ctx.state
    if not cmd.args:
        return await usage(cmd, ctx)
    ref = cmd.args[0]
    item = requests.find_review(ctx, ref)
    cid = item["contact_id"] if item else ref
    if on:
        if item is not None:
            requests.drop_review(ctx, item)
        st.kv.set(requests.BLOCK + cid, {"at": ctx.now.timestamp(), "by": cmd.sender.id})
        ctx.record("blocked", contact_id=cid)
    else:
        if st.kv.get(requests.BLOCK + cid) is None:
            return await say(ctx, "friends/cmd_unknown_contact", customer_id=cid)
        st.kv.delete(requests.BLOCK + cid)
        ctx.record("unblocked", contact_id=cid)
    await ctx.reply("friends/cmd_blocked", customer_id=cid, on=on)


# -- the book ---------------------------------------------------------------------------------
async def contact(cmd: Command, ctx: Ctx) -> None:
    if not cmd.args:
        return await usage(cmd, ctx)
    cid = cmd.args[0]
    customer = ctx.book.get(cid)
    if customer is None:
        return await say(ctx, "friends/cmd_unknown_contact", customer_id=cid)
    running = [f for f in followups.of_contact(ctx, cid) if f["status"] == followups.ACTIVE]
    await ctx.reply(
        "friends/cmd_contact",
        customer_id=cid,
        name=customer.alias or customer.name,
        channel=customer.channel,
        stage=customer.stage,
        tag_list=sorted(customer.tags),
        friend=customer.is_friend,
        opted_out=ctx.ledger.is_opted_out(cid),
        first_seen=_when(ctx, customer.first_seen),
        last_inbound=_when(ctx, customer.last_inbound),
        last_outbound=_when(ctx, customer.last_outbound),
        consent=[
            {
                "purpose": k,
                "how": v.get("how", ""),
                "source": v.get("source", ""),
                "at": _when(ctx, v.get("at")),
            }
            for k, v in customer.consent.items()
            if isinstance(v, dict)
        ],
        notes=customer.notes,
        followups=[f["sequence"] for f in running],
    )


async def note(cmd: Command, ctx: Ctx) -> None:
    parts = cmd.rest.split(None, 1)
    if len(parts) < 2:
        return await usage(cmd, ctx)
    cid, text = parts
    if not await known(cmd, ctx, cid):
        return
    ctx.book.add_note(cid, text, ctx.now)
    ctx.record("noted", contact_id=cid)
    await ctx.reply("friends/cmd_noted", customer_id=cid)


async def stage(cmd: Command, ctx: Ctx) -> None:
    if len(cmd.args) != 2:
        return await usage(cmd, ctx)
    cid, new = cmd.args
    if not await known(cmd, ctx, cid):
        return
    if new not in STAGES:
        return await say(ctx, "friends/cmd_bad_stage", stage=new, stages=list(STAGES))
    previous = ctx.book.set_stage(cid, new, ctx.now, source="admin")
    ctx.record("stage", contact_id=cid, stage=new, previous=previous, source="admin")
    await ctx.reply("friends/cmd_stage", customer_id=cid, stage=new, previous=previous)


async def purchase(cmd: Command, ctx: Ctx) -> None:
    if len(cmd.args) != 1:
        return await usage(cmd, ctx)
    cid = cmd.args[0]
    if not await known(cmd, ctx, cid):
        return
    book = ctx.book
    customer = book.get(cid)
    assert customer is not None
    new = "repeat" if customer.stage in ("customer", "repeat") else "customer"
    book.tag(cid, ["purchased"], ctx.now, source="admin")
    if new == customer.stage:  # a further purchase: the stage stays, the anchor fires again
        followups.enrol(ctx, cid, "purchased", ctx.now.timestamp())
    else:
        book.set_stage(cid, new, ctx.now, source="purchase")
    ctx.record("purchase", contact_id=cid, stage=new)
    await ctx.reply("friends/cmd_purchase", customer_id=cid, stage=new)


async def segment(cmd: Command, ctx: Ctx) -> None:
    if not cmd.rest:
        return await usage(cmd, ctx)
    try:
        seg = Segment.parse(cmd.rest)
    except SegmentError as error:
        return await say(
            ctx,
            "friends/cmd_bad_segment",
            expression=cmd.rest,
            position=error.pos,
            reason=str(error),
        )
    ids = ctx.book.select(seg)
    await ctx.reply("friends/cmd_segment", expression=cmd.rest, count=len(ids), sample=ids[:10])


# -- follow-ups -------------------------------------------------------------------------------
async def show_followups(cmd: Command, ctx: Ctx) -> None:
    if len(cmd.args) != 1:
        return await usage(cmd, ctx)
    cid = cmd.args[0]
    if not await known(cmd, ctx, cid):
        return
    items = [
        {
            "sequence": f["sequence"],
            "status": f["status"],
            "reason": f["reason"],
            "step": f["step"],
            "sent": f["sent"],
            "due": _when(ctx, f["due_at"]) if f["status"] == followups.ACTIVE else "",
        }
        for f in followups.of_contact(ctx, cid)
    ]
    await ctx.reply("friends/cmd_followups", customer_id=cid, items=items)


async def stop_followups(cmd: Command, ctx: Ctx) -> None:
    if not 1 <= len(cmd.args) <= 2:
        return await usage(cmd, ctx)
    cid = cmd.args[0]
    if not await known(cmd, ctx, cid):
        return
    n = followups.stop(ctx, cid, "admin", cmd.args[1] if len(cmd.args) == 2 else None)
    await ctx.reply("friends/cmd_followups_stopped", customer_id=cid, count=n)


# -- CSV and paced adding ---------------------------------------------------------------------
def exports_dir(ctx: Ctx) -> Path:
    st = ctx.state
    folder: Path = st.config.exports_dir
    return folder if folder.is_absolute() else ctx.settings.bot.data_dir / folder


def _path(ctx: Ctx, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else ctx.settings.bot.data_dir / path


async def import_book(cmd: Command, ctx: Ctx) -> None:
    if not cmd.rest:
        return await usage(cmd, ctx)
    try:
        report = csvio.import_book(ctx, _path(ctx, cmd.rest))
    except ValueError as error:
        return await say(ctx, "friends/cmd_bad_input", reason=str(error))
    await ctx.reply("friends/cmd_imported", **report.as_dict())


async def export_book(cmd: Command, ctx: Ctx) -> None:
    path = exports_dir(ctx) / f"book-{ctx.now:%Y%m%d-%H%M%S}.csv"
    rows = csvio.export_book(ctx, path)
    path.chmod(0o600)
    await ctx.reply(
        "friends/cmd_book_exported",
        file=str(path),
        rows=rows,
        media=Media(MediaKind.FILE, path=str(path), title=path.name),
    )


async def add_friends(cmd: Command, ctx: Ctx) -> None:
    if not cmd.rest:
        return await usage(cmd, ctx)
    path = _path(ctx, cmd.rest)
    try:
        rows, report = csvio.read_adds(ctx, path)
    except ValueError as error:
        return await say(ctx, "friends/cmd_bad_input", reason=str(error))
    result = adds.queue(ctx, rows, f"csv:{path.name}", ctx.now.timestamp())
    await reply_queued(ctx, result, report.as_dict())


async def add_room_members(cmd: Command, ctx: Ctx) -> None:
    parts = cmd.rest.split(None, 1)
    if len(parts) < 2:
        return await usage(cmd, ctx)
    room_id, consent = parts
    if not adds.room_known(ctx, room_id):
        return await say(ctx, "friends/cmd_unknown_room", room=room_id)
    rows = adds.room_candidates(ctx, room_id, consent)
    result = adds.queue(ctx, rows, f"room:{room_id}", ctx.now.timestamp())
    await reply_queued(ctx, result, {"errors": [], "warnings": [], "rows": len(rows)})


async def reply_queued(ctx: Ctx, result: dict[str, Any], report: dict[str, Any]) -> None:
    await ctx.reply(
        "friends/cmd_adds_queued",
        queued=result["queued"],
        skipped=result["skipped"],
        errors=report["errors"][:20],
        more_errors=max(0, len(report["errors"]) - 20),
        rows=report["rows"],
    )


async def adds_status(cmd: Command, ctx: Ctx) -> None:
    await ctx.reply("friends/cmd_adds_status", **adds.summary(ctx, ctx.now))


async def adds_control(cmd: Command, ctx: Ctx, action: str) -> None:
    n = 0
    if action == "pause":
        adds.set_state(ctx, paused=True, reason="admin", alerted=True)
        ctx.record("adds_paused", reason="admin")
    elif action == "resume":
        adds.resume(ctx)
        ctx.record("adds_resumed")
    else:
        n = adds.cancel(ctx, ctx.now.timestamp())
        ctx.record("adds_cancelled", count=n)
    await ctx.reply("friends/cmd_adds_changed", action=action, count=n)


async def block_on(cmd: Command, ctx: Ctx) -> None:
    await block(cmd, ctx, True)


async def block_off(cmd: Command, ctx: Ctx) -> None:
    await block(cmd, ctx, False)


async def adds_pause(cmd: Command, ctx: Ctx) -> None:
    await adds_control(cmd, ctx, "pause")


async def adds_resume(cmd: Command, ctx: Ctx) -> None:
    await adds_control(cmd, ctx, "resume")


async def adds_cancel(cmd: Command, ctx: Ctx) -> None:
    await adds_control(cmd, ctx, "cancel")


Handler = Callable[[Command, Ctx], Awaitable[None]]
# English command name -> handler (Chinese names: persona/friends/commands.toml).
COMMANDS: dict[str, Handler] = {
    "friend_requests": list_requests,
    "accept": accept,
    "reject": reject,
    "block": block_on,
    "unblock": block_off,
    "contact": contact,
    "note": note,
    "stage": stage,
    "purchase": purchase,
    "segment": segment,
    "followups": show_followups,
    "stop_followups": stop_followups,
    "import_book": import_book,
    "export_book": export_book,
    "add_friends": add_friends,
    "add_room_members": add_room_members,
    "adds_status": adds_status,
    "adds_pause": adds_pause,
    "adds_resume": adds_resume,
    "adds_cancel": adds_cancel,
}
