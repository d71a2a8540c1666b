"""Group operations (社群运营): batched welcomes, rules, moderation with an audit log,
keyword invites with overflow, and activity data for the analytics report.

Only rooms listed in the rooms file (GROUPS_ROOMS_FILE, default persona/groups/rooms.toml,
keyed by room id) are touched; every other room is left alone. The file is checked at
start-up (a problem stops start-up, naming the room id and the key) and re-read every
minute: a room whose new version is refused keeps its last good one, the others move on,
and the admins are told.

Events: MemberJoined / MemberLeft and every message in configured rooms (listen_in_rooms);
the rules keyword in a room; an invite keyword, or a short request for it ("我想进群"), in
private chat.
Job: groups.tick every minute: welcome batches, scheduled rules, config reload, hourly
activity summaries.
Commands: group_status, group_strikes, group_audit (the moderation audit), group_unstrike,
group_dry_run_on, group_dry_run_off, group_reload (Chinese names in
persona/groups/commands.toml).
Persona: groups/* (see `plugin` below); a room's rules_key may name another groups/ key.
Config: GROUPS_* (see GroupsConfig and config.example.env).
Helpers live in plugins/_groups/.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from plugins._groups import activity
from plugins._groups.db import GroupsDB, Strike
from plugins._groups.enforce import moderate, undo
from plugins._groups.invites import invite, normal, wanted_rooms
from plugins._groups.rooms import Checks, Moderation, Problem, RoomConfig, RoomsFile, say
from plugins._groups.state import Ctx, GroupsConfig, GroupsState
from plugins._groups.welcome import (
    flush_welcomes,
    member_joined,
    member_left,
    post_rules,
    quiet,
    scheduled_rules,
)
from pond import Command, Event, MemberJoined, MemberLeft, Message, Plugin, filters
from pond import Problem as CodedProblem

log = logging.getLogger("pond.plugins.groups")
__all__ = ["GroupsConfig", "GroupsState", "plugin"]


def build_state(ctx: Ctx) -> GroupsState:
    """Read and check the rooms file (a problem stops start-up, naming the room and key)."""
    path = rooms_path(ctx)
    if not path.exists() and ctx.config.rooms_file != GroupsConfig.rooms_file:
        raise CodedProblem(
            "groups.rooms_missing", "GROUPS_ROOMS_FILE: {path} does not exist", path=path
        )
    rooms = RoomsFile(path, _checks(ctx), _base(ctx.config))
    problems = rooms.load()
    if problems:
        raise CodedProblem(
            "groups.rooms_invalid",
            "{path}: {problems} (see the comments at the top of the file)",
            path=path,
            problems=[str(p) for p in problems],
        )
    log.info("groups: %d room(s) configured in %s", len(rooms.rooms), path)
    return GroupsState(rooms, GroupsDB(ctx.sql.engine, ctx.sql.metadata), ctx.store)


plugin = Plugin(
    "groups",
    persona=[
        "groups/welcome",
        "groups/rules",
        "groups/warn",
        "groups/warn_final",
        "groups/removed",
        "groups/admin_remove",
        "groups/invite_sent",
        "groups/invite_already",
        "groups/invite_pending",
        "groups/invite_full",
        "groups/invite_manual",
        "groups/invite_failed",
        "groups/admin_invite",
        "groups/admin_rooms_full",
        "groups/config_alert",
        "groups/cmd_status",
        "groups/cmd_strikes",
        "groups/cmd_audit",
        "groups/cmd_unstrike",
        "groups/cmd_unstrike_missing",
        "groups/cmd_dry_run",
        "groups/cmd_reload",
        "groups/cmd_unknown_room",
    ],
    # A room's rules_key names another groups/ key; the rooms file is checked on load.
    persona_prefixes=["groups/"],
    config=GroupsConfig,
    state=build_state,
    description="group welcomes, rules, moderation, invites and activity",
)


# -- start-up and configuration -----------------------------------------------------------
def rooms_path(ctx: Ctx) -> Path:
    path: Path = ctx.config.rooms_file
    return path if path.is_absolute() else ctx.settings.bot.persona_dir / path


def _checks(ctx: Ctx) -> Checks:
    persona = ctx.persona

    def has_key(key: str) -> bool:  # declared (persona_prefixes) and with a template
        return not ctx.check_keys([key])

    def layer_problem(layer: str, room_id: str) -> str | None:
        if layer not in persona.layer_names():
            return say(
                "unknown_layer",
                "unknown persona layer {layer!r}: add a [layers.{layer}] table to persona.toml",
                layer=layer,
            )
        if layer not in persona.layers_for(contact_id=None, room_id=room_id, tags=()):
            return say(
                "layer_elsewhere",
                "persona layer {layer!r} does not apply to this room: add the room id to "
                "rooms = [...] of [layers.{layer}] in persona.toml",
                layer=layer,
            )
        return None

    return Checks(ctx.settings.bot.timezone, has_key, layer_problem)


def _base(config: GroupsConfig) -> RoomConfig:
    """Settings-level defaults every room starts from (then [defaults], then the room)."""
    return RoomConfig(
        id="",
        welcome_cooldown_s=config.welcome_cooldown_s,
        member_limit=config.member_limit,
        dry_run=config.dry_run,
        rules_cooldown_s=config.rules_cooldown_s,
        moderation=Moderation(strike_hours=config.strike_ttl_h),
    )


@plugin.on_startup()
async def start(ctx: Ctx) -> None:
    activity.start_rollup(ctx)


def reload_rooms(ctx: Ctx, *, force: bool = False) -> list[Problem] | None:
    st = ctx.state
    problems = st.file.reload(force=force)
    if problems is None:
        return None
    ctx.record("config_reloaded", rooms=len(st.rooms), problems=len(problems))
    for problem in problems:
        log.error("rooms file change refused: %s", problem)
    return problems


# -- filters (the rooms file is live data, so they read the current state) ----------------
def _in_configured_room(ctx: Ctx) -> filters.Filter:
    st = ctx.state

    def check(event: Event) -> bool:
        room = getattr(event, "room", None)
        return room is not None and room.id in st.rooms

    return check


def _rules_keyword(ctx: Ctx) -> filters.Filter:
    st = ctx.state

    def check(event: Event) -> bool:
        if not isinstance(event, Message) or event.room is None:
            return False
        room = st.room(event.room.id)
        word = normal(event.text)
        return room is not None and any(word == normal(k) for k in room.rules_keywords)

    return check


def _invite_keyword(ctx: Ctx) -> filters.Filter:
    def check(event: Event) -> bool:
        return isinstance(event, Message) and bool(wanted_rooms(ctx, event.text)[1])

    return check


# -- events --------------------------------------------------------------------------------
@plugin.on_message(
    filters.configured(_in_configured_room), listen_in_rooms=True, block=False, priority=10
)
async def watch(event: Message, ctx: Ctx) -> None:
    """Every message in a configured room: activity, moderation, a due welcome."""
    st = ctx.state
    room = st.room(event.chat_id)
    if room is None:
        return
    activity.message(event, ctx, room)
    await moderate(event, ctx, room)
    await flush_welcomes(ctx, only=room.id)


@plugin.on_message(
    filters.in_room(), filters.configured(_rules_keyword), listen_in_rooms=True, when_paused=True
)
async def rules(event: Message, ctx: Ctx) -> None:
    st = ctx.state
    room = st.room(event.chat_id)
    if room is None or quiet(ctx, room.id):
        return
    await post_rules(ctx, room, "keyword", asker=event.sender.id)


@plugin.on_message(filters.private(), filters.configured(_invite_keyword), priority=50)
async def invite_keyword(event: Message, ctx: Ctx) -> None:
    await invite(event, ctx)


@plugin.on_member_joined(filters.configured(_in_configured_room), block=False)
async def joined(event: MemberJoined, ctx: Ctx) -> None:
    st = ctx.state
    room = st.room(event.room.id)
    if room is not None:
        await member_joined(event, ctx, room)


@plugin.on_member_left(filters.configured(_in_configured_room), block=False)
async def left(event: MemberLeft, ctx: Ctx) -> None:
    st = ctx.state
    room = st.room(event.room.id)
    if room is not None:
        await member_left(event, ctx, room)


@plugin.scheduled("* * * * *")
async def tick(ctx: Ctx) -> None:
    st = ctx.state
    problems = reload_rooms(ctx)
    if problems:
        ctx.alert(
            "groups/config_alert", file=str(rooms_path(ctx)), problems=[str(p) for p in problems]
        )
    await flush_welcomes(ctx)
    await scheduled_rules(ctx)
    activity.rollup(ctx)
    st.flood.prune(ctx.now.timestamp())


# -- operator commands -------------------------------------------------------------------------
def _when(ctx: Ctx, at: float) -> str:
    return datetime.fromtimestamp(at, ctx.clock.tz).strftime("%m-%d %H:%M")


@plugin.command("group_status", keep_args=True)
async def group_status(cmd: Command, ctx: Ctx) -> None:
    st = ctx.state
    rooms = [
        {
            "name": st.label(r.id),
            "id": r.id,
            "members": st.size(r.id),
            "limit": r.member_limit,
            "welcome": r.welcome,
            "dry_run": st.dry_run(r),
            "role": r.role,
            "invite": bool(r.invite_keywords),
            "waiting": len(st.pending[r.id].members) if r.id in st.pending else 0,
        }
        for r in st.rooms.values()
    ]
    await ctx.reply("groups/cmd_status", rooms=rooms, problems=[str(p) for p in st.file.problems])


def _strike_row(ctx: Ctx, s: Strike) -> dict[str, Any]:
    st = ctx.state
    return {
        "id": s.id,
        "room_name": st.label(s.room_id),
        "member_id": s.contact_id,
        "member_name": st.db.name(s.contact_id),
        "rule": s.rule,
        "when": _when(ctx, s.at),
        "dry_run": s.dry_run,
    }


@plugin.command("group_strikes", keep_args=True)
async def group_strikes(cmd: Command, ctx: Ctx) -> None:
    """Recent strikes still in force, everywhere or for one room or one member."""
    st = ctx.state
    since = ctx.now.timestamp() - ctx.config.strike_ttl_h * 3600
    who = cmd.args[0] if cmd.args else None
    room_id = who if who in st.rooms else None
    contact_id = who if who and room_id is None else None
    found = st.db.list_strikes(since=since, room_id=room_id, contact_id=contact_id)
    await ctx.reply(
        "groups/cmd_strikes",
        strikes=[_strike_row(ctx, s) for s in found],
        scope=st.label(room_id) if room_id else (contact_id or ""),
    )


AUDIT_SHOWN = 20
AUDIT_MAX = 50


@plugin.command("group_audit")
async def group_audit(cmd: Command, ctx: Ctx) -> None:
    """The latest moderation actions (the audit), everywhere or for one room or member:
    `<command> [room id | member id] [how many]`."""
    st = ctx.state
    args = list(cmd.args)
    limit = AUDIT_SHOWN
    if args and args[-1].isdigit():
        limit = max(1, min(AUDIT_MAX, int(args.pop())))
    who = args[0] if args else None
    room_id = who if who in st.rooms else None
    contact_id = who if who and room_id is None else None
    rows = st.db.recent_audit(limit, room_id=room_id, contact_id=contact_id)
    await ctx.reply(
        "groups/cmd_audit",
        scope=st.label(room_id) if room_id else (contact_id or ""),
        rows=[
            {
                "when": _when(ctx, float(r["at"])),
                "room_name": st.label(r["room_id"]),
                "member_id": r["contact_id"],
                "member_name": st.db.name(r["contact_id"]),
                "action": r["action"],
                "rule": r["rule"],
                "strikes": int(r["strikes"] or 0),
                "strike_id": r["strike_id"],
                "dry_run": bool(r["dry_run"]),
                "actor": r["actor"],
                "detail": r["detail"],
            }
            for r in rows
        ],
        limit=limit,
    )


@plugin.command("group_unstrike", keep_args=True)
async def group_unstrike(cmd: Command, ctx: Ctx) -> None:
    """By strike number (from the strikes list), or a member's latest strike [in a room]."""
    st = ctx.state
    target: Strike | None = None
    if cmd.args and cmd.args[0].lstrip("#").isdigit():
        target = st.db.strike(int(cmd.args[0].lstrip("#")))
    elif cmd.args:
        room_id = cmd.args[1] if len(cmd.args) > 1 else None
        latest = st.db.list_strikes(since=0.0, contact_id=cmd.args[0], room_id=room_id, limit=1)
        target = latest[0] if latest else None
    if target is None or target.revoked_at is not None or not undo(ctx, target, cmd.sender.id):
        await ctx.reply("groups/cmd_unstrike_missing", what=cmd.rest)
        return
    room = st.room(target.room_id)
    hours = room.moderation.strike_hours if room else ctx.config.strike_ttl_h
    left = st.db.count_strikes(
        target.room_id, target.contact_id, ctx.now.timestamp() - hours * 3600, target.dry_run
    )
    await ctx.reply("groups/cmd_unstrike", **_strike_row(ctx, target), remaining=left)


async def _dry_run(cmd: Command, ctx: Ctx, on: bool) -> None:
    st = ctx.state
    room_id = cmd.args[0] if cmd.args else None
    if room_id is not None and room_id not in st.rooms:
        await ctx.reply("groups/cmd_unknown_room", group_id=room_id)
        return
    st.set_dry_run(on, room_id)
    ctx.record("dry_run", room_id=room_id or "", on=on, admin=cmd.sender.id)
    await ctx.reply("groups/cmd_dry_run", on=on, room_name=st.label(room_id) if room_id else "")


@plugin.command("group_dry_run_on", keep_args=True)
async def group_dry_run_on(cmd: Command, ctx: Ctx) -> None:
    await _dry_run(cmd, ctx, True)


@plugin.command("group_dry_run_off", keep_args=True)
async def group_dry_run_off(cmd: Command, ctx: Ctx) -> None:
    await _dry_run(cmd, ctx, False)


@plugin.command("group_reload", keep_args=True)
async def group_reload(cmd: Command, ctx: Ctx) -> None:
    st = ctx.state
    problems = reload_rooms(ctx, force=True) or []
    await ctx.reply("groups/cmd_reload", rooms=len(st.rooms), problems=[str(p) for p in problems])
