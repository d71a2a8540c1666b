"""Operator commands for tags and data rights: tag, untag, export_contact, delete_contact.

Erasure is irreversible, so it asks for the id twice (`删除客户 id id`): a word of
confirmation would be copy, and a mistyped id cannot match itself by accident."""

from __future__ import annotations

from plugins._friends.admin import Handler, known, usage
from plugins._friends.state import Ctx
from pond import Command


async def tag(cmd: Command, ctx: Ctx) -> None:
    if len(cmd.args) < 2:
        return await usage(cmd, ctx)
    cid, *tags = cmd.args
    if not await known(cmd, ctx, cid):
        return
    try:
        added = ctx.book.tag(cid, tags, ctx.now, source="admin")
    except ValueError as error:
        await ctx.reply("friends/cmd_bad_input", reason=str(error)[:200])
        return
    ctx.record("tagged", contact_id=cid, count=len(added))
    await ctx.reply("friends/cmd_tags_changed", customer_id=cid, added=added, removed=[])


async def untag(cmd: Command, ctx: Ctx) -> None:
    if len(cmd.args) < 2:
        return await usage(cmd, ctx)
    cid, *tags = cmd.args
    if not await known(cmd, ctx, cid):
        return
    removed = ctx.book.untag(cid, tags)
    ctx.record("untagged", contact_id=cid, count=len(removed))
    await ctx.reply("friends/cmd_tags_changed", customer_id=cid, added=[], removed=removed)


async def export_contact(cmd: Command, ctx: Ctx) -> None:
    st = ctx.state
    if len(cmd.args) != 1:
        return await usage(cmd, ctx)
    data = ctx.rights.export_contact(cmd.args[0], by=cmd.sender.id, origin=cmd.origin)
    if ctx.rights.is_empty(data):
        await ctx.reply("friends/cmd_unknown_contact", customer_id=cmd.args[0])
        return
    path = ctx.rights.write_export(data, st.config.exports_dir)
    await ctx.reply("friends/cmd_contact_exported", path=str(path), counts=ctx.rights.summary(data))


async def delete_contact(cmd: Command, ctx: Ctx) -> None:
    if len(cmd.args) == 1:
        await ctx.reply("friends/cmd_erase_confirm", customer_id=cmd.args[0])
        return
    if len(cmd.args) != 2 or cmd.args[0] != cmd.args[1]:
        return await usage(cmd, ctx)
    done = ctx.rights.erase_contact(cmd.args[0], by=cmd.sender.id, origin=cmd.origin)
    await ctx.reply("friends/cmd_erased", found=done.found, counts=done.counts, left=len(done.left))


COMMANDS: dict[str, Handler] = {
    "tag": tag,
    "untag": untag,
    "export_contact": export_contact,
    "delete_contact": delete_contact,
}
