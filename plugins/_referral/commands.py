"""The operators' referral commands (Chinese names: persona/referral/commands.toml):
the leaderboard, voiding an invite with a reason, clearing a flagged one, the invite tree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from pond import Command

from . import flow
from .db import CLEARED, Invite
from .state import Ctx

Handler = Callable[[Command, Ctx], Awaitable[None]]


async def top(cmd: Command, ctx: Ctx) -> None:
    """邀请榜 [人数] [天数]: the top inviters, all time or of the last N days."""
    st = ctx.state
    numbers = [int(a) for a in cmd.args if a.isdecimal()]  # isdigit takes "²"
    if len(numbers) != len(cmd.args) or len(numbers) > 2:
        await ctx.reply("referral/cmd_usage", command="referral_top")
        return
    wanted = numbers[0] if numbers else ctx.config.top_n
    days = numbers[1] if len(numbers) > 1 else 0
    since = (ctx.now - timedelta(days=days)).timestamp() if days else None
    board = st.db.leaderboard(since)[: max(wanted, 1)]
    rows = [
        {"rank": n, "id": cid, "name": flow.display(ctx, cid), "count": count}
        for n, (cid, count) in enumerate(board, 1)
    ]
    await ctx.reply("referral/cmd_top", rows=rows, top=wanted, days=days)


async def void(cmd: Command, ctx: Ctx) -> None:
    """作废邀请 <被邀请人id> <原因>: the invite stops counting; who, when and why are kept."""
    st = ctx.state
    if len(cmd.args) < 2:
        await ctx.reply("referral/cmd_usage", command="referral_void")
        return
    invitee = cmd.args[0]
    reason = cmd.rest.strip().removeprefix(invitee).strip()[:200]
    inv = st.db.invite_of(invitee)
    if inv is None:
        await ctx.reply("referral/cmd_unknown", ref=invitee)
        return
    st.db.update(
        inv.id,
        status="void",
        review="",
        void_by=cmd.sender.id,
        void_reason=reason,
        settled_at=ctx.now.timestamp(),
    )
    # The reason is the operator's words: kept in the invite's row, not in the event store.
    ctx.record(
        "voided", contact_id=invitee, inviter=inv.inviter_id, by=cmd.sender.id, was=inv.status
    )
    await ctx.reply(
        "referral/cmd_voided",
        invitee_id=invitee,
        invitee_name=flow.display(ctx, invitee),
        inviter_id=inv.inviter_id,
        inviter_name=flow.display(ctx, inv.inviter_id),
        reason=reason,
        was=inv.status,
    )


async def clear(cmd: Command, ctx: Ctx) -> None:
    """核实邀请 <id>: an operator looked at a flagged invite (or an inviter's burst) and lets
    it stand: held invites count again once their stay is over."""
    st = ctx.state
    if len(cmd.args) != 1:
        await ctx.reply("referral/cmd_usage", command="referral_clear")
        return
    ref = cmd.args[0]
    flagged = [i for i in st.db.to_review() if ref in (i.invitee_id, i.inviter_id)]
    if not flagged:
        await ctx.reply("referral/cmd_unknown", ref=ref)
        return
    released = 0
    for inv in flagged:
        if inv.status == "held":
            st.db.update(inv.id, status="pending", review=CLEARED)
            released += 1
        else:
            st.db.update(inv.id, review=CLEARED)
    ctx.record("cleared", contact_id=ref, n=len(flagged), released=released, by=cmd.sender.id)
    await ctx.reply("referral/cmd_cleared", ref=ref, n=len(flagged), released=released)
    await flow.settle(ctx)


async def tree(cmd: Command, ctx: Ctx) -> None:
    """邀请记录 <id>: who brought this customer, and whom they brought (when, how, status)."""
    st = ctx.state
    if len(cmd.args) != 1:
        await ctx.reply("referral/cmd_usage", command="referral_tree")
        return
    cid = cmd.args[0]
    mine = st.db.invite_of(cid)
    brought = st.db.by_inviter(cid)
    if mine is None and not brought and st.db.code_of(cid) is None:
        await ctx.reply("referral/cmd_unknown", ref=cid)
        return

    def row(inv: Invite, who: str) -> dict[str, object]:
        return {
            "id": who,
            "name": flow.display(ctx, who),
            "when": datetime.fromtimestamp(inv.at, ctx.clock.tz).strftime("%m-%d %H:%M"),
            "path": inv.path,
            "room_id": inv.room_id,
            "status": inv.status,
            "reason": inv.reason,
            "review": inv.review,
            "void_by": inv.void_by,
            "void_reason": inv.void_reason,
        }

    await ctx.reply(
        "referral/cmd_tree",
        customer_id=cid,
        name=flow.display(ctx, cid),
        code=st.db.code_of(cid) or "",
        invited_by=row(mine, mine.inviter_id) if mine is not None else None,
        rows=[row(inv, inv.invitee_id) for inv in brought[-30:]],
        total=len(brought),
        valid=st.db.valid_count(cid),
    )


# name -> (handler, keep_args: its arguments are plain numbers, safe to audit verbatim)
COMMANDS: dict[str, tuple[Handler, bool]] = {
    "referral_top": (top, True),
    "referral_void": (void, False),
    "referral_clear": (clear, False),
    "referral_tree": (tree, False),
}
