"""Operators' control from WeChat and from the command line (scripts/admin.py): status,
pause/resume, reload, the review queue, finding a contact's id, the daily report, the admin
list. Everything answers in the service voice (persona/admin/*.j2). Tags and data rights
(export/erase a contact) are the friends plugin's commands (tag, untag, export_contact,
delete_contact), which the command line runs the same way.

Commands (admins only, private chat; Chinese names in persona/admin/commands.toml): status,
pause, resume, reload, reviews, resolve, find, report, admins, unbind. Wrong arguments
answer with the command's usage; an admin's "/word" that is no command answers with the
command list.
Job: admin.morning_report at 09:00 (JOB_ADMIN_MORNING_REPORT_CRON): yesterday's numbers,
pending reviews and the rest of today's agenda, to every admin.
Review source: bulk deliveries left "unknown" by a crash (settled with `resolve`).
Status source: the status snapshot (what `scripts/admin.py status --json` prints).
The report shows other plugins' headline numbers where they declare a summary source for
one of report.SECTIONS (the analytics plugin's "growth"); admin imports no other plugin.
State: the last good persona/admin/words.toml (ADMIN_WORDS_FILE), read when the state
is built at start-up (a broken file stops it), re-read on reload.
Config: ADMIN_* (see AdminConfig and config.example.env). Helpers live in plugins/_admin/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from plugins._admin import contacts, report, reviews
from plugins._admin.status import snapshot
from plugins._admin.words import Words, WordsError, load
from pond import ALL_CHATS, Command, Context, Event, Message, Plugin, ReviewItem, filters


@dataclass(frozen=True)
class AdminConfig:
    words_file: Path = Path("admin/words.toml")  # relative to BOT_PERSONA_DIR
    review_limit: int = 20  # items per review listing


@dataclass
class AdminState:
    words: Words  # the last good words.toml (a broken reload keeps it)


Ctx = Context[AdminConfig, AdminState]


def _words_path(ctx: Ctx) -> Path:
    path: Path = ctx.config.words_file
    return path if path.is_absolute() else ctx.settings.bot.persona_dir / path


def build_state(ctx: Ctx) -> AdminState:
    """A broken words.toml stops start-up here, naming the file and the key."""
    return AdminState(load(_words_path(ctx)))


plugin = Plugin(
    "admin",
    persona=[
        "admin/status",
        "admin/paused",
        "admin/resumed",
        "admin/reload",
        "admin/reviews",
        "admin/resolved",
        "admin/found",
        "admin/usage",
        "admin/unknown_command",
        "admin/report",
        "admin/admins",
        "admin/unbound",
        "admin/restart_alert",
        "admin/error_alert",
        "admin/disk_alert",
        "admin/queue_alert",
    ],
    config=AdminConfig,
    state=build_state,
    description="operator commands, daily report, review queue",
)

_LIST_SPLIT = re.compile(r"[,\uff0c\u3001]+")  # , and the full-width comma / enumeration comma


@plugin.on_reload()
async def reload_words(ctx: Ctx) -> list[str]:
    try:
        ctx.state.words = load(_words_path(ctx))
    except WordsError as error:
        return [str(error)]  # the last good words stay
    return []


def _at(ctx: Ctx, ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, ctx.settings.bot.timezone).strftime("%m-%d %H:%M")


def _items(args: tuple[str, ...] | list[str]) -> list[str]:
    return [part for arg in args for part in _LIST_SPLIT.split(arg) if part]


async def usage(command: Command, ctx: Ctx, problem: str = "", value: str = "") -> None:
    info = ctx.commands.catalog.info(command.name)
    await ctx.reply(
        "admin/usage",
        name=info.display,
        usage=info.usage,
        help=info.help,
        problem=problem,
        value=value[:60],
    )


# -- an admin's "/something" that is no command -------------------------------------------------
def _admin_slash(ctx: Ctx) -> filters.Filter:
    admins = ctx.admins

    def check(event: Event) -> bool:
        return (
            isinstance(event, Message)
            and event.text.strip().startswith("/")
            and admins.is_admin(event.sender.id)
        )

    return check


@plugin.on_message(
    filters.private(), filters.configured(_admin_slash), priority=1, when_paused=True
)
async def unknown_command(event: Message, ctx: Ctx) -> None:
    """Known commands never get here (the kernel runs them first)."""
    word = event.text.strip().split()[0]
    await ctx.reply("admin/unknown_command", word=word[:30], commands=ctx.commands.listing())


# -- status, pause, resume, reload --------------------------------------------------------------
@plugin.command("status", keep_args=True)
async def status(command: Command, ctx: Ctx) -> None:
    await ctx.reply("admin/status", **await snapshot(ctx))


@plugin.status_source()
async def status_values(ctx: Ctx) -> dict[str, Any]:
    """What `scripts/admin.py status --json` prints, asked of the running bot."""
    return await snapshot(ctx)


@plugin.command("pause", keep_args=True)
async def pause(command: Command, ctx: Ctx) -> None:
    """`pause` (everything), `pause all|CHAT_ID [duration]`, `pause 30m`."""
    w = ctx.state.words
    args = list(command.args)
    if len(args) > 2:
        return await usage(command, ctx)
    minutes = None
    if len(args) == 2:
        minutes = w.minutes(args[1])
        if minutes is None:
            return await usage(command, ctx, "bad_duration", args[1])
        args = args[:1]
    target = ALL_CHATS
    if args and not w.is_("all", args[0]):
        single = w.minutes(args[0])
        if single is not None and minutes is None:
            minutes = single
        else:
            target = args[0][:128]
    ctx.pauses.pause(target, minutes=minutes, reason="operator")
    ctx.record("paused", chat_id=target, minutes=minutes)
    known = target == ALL_CHATS or ctx.book.exists(target) or ctx.is_room(target)
    until = ctx.now.timestamp() + minutes * 60 if minutes else None
    await ctx.reply(
        "admin/paused",
        everything=target == ALL_CHATS,
        target=target,
        until=_at(ctx, until),
        known=known,
    )


@plugin.command("resume", keep_args=True)
async def resume(command: Command, ctx: Ctx) -> None:
    """`resume` lifts "pause everything"; `resume all` also every chat an operator paused;
    `resume CHAT_ID` one chat, whatever paused it."""
    if len(command.args) > 1:
        return await usage(command, ctx)
    pauses = ctx.pauses
    if not command.args:
        targets, scope = [ALL_CHATS], "everything"
    elif ctx.state.words.is_("all", command.args[0]):
        operator = [c for c, (_, why) in pauses.active().items() if why == "operator"]
        targets, scope = sorted({ALL_CHATS, *operator}), "all"
    else:
        targets, scope = [command.args[0]], "chat"
    resumed = [t for t in targets if pauses.resume(t)]
    ctx.record("resumed", scope=scope, chats=len(resumed))
    ctx.outbox.wake()
    still = sorted(pauses.active().items())
    await ctx.reply(
        "admin/resumed",
        scope=scope,
        target=command.args[0][:128] if scope == "chat" else "",
        resumed=len(resumed),
        still=[
            {"chat_id": chat, "reason": why, "until": _at(ctx, until)}
            for chat, (until, why) in still[:8]
        ],
        still_count=len(still),
    )


@plugin.command("reload", keep_args=True)
async def reload(command: Command, ctx: Ctx) -> None:
    problems = await ctx.reload()
    await ctx.reply(
        "admin/reload",
        live=ctx.transport_name != "offline",  # the command line's App: the bot re-reads at start
        parts=[
            {"part": part, "problems": found[:5], "more": max(0, len(found) - 5)}
            for part, found in problems.items()
        ],
    )


# -- the review queue ---------------------------------------------------------------------------
@plugin.review_source()
async def unknown_deliveries(ctx: Ctx) -> list[ReviewItem]:
    return reviews.unknown_items(ctx)


@plugin.review_source()
async def staff_tasks(ctx: Ctx) -> list[ReviewItem]:
    return reviews.staff_items(ctx)


@plugin.command("reviews", keep_args=True)
async def list_reviews(command: Command, ctx: Ctx) -> None:
    failed: list[str] = []
    found = await ctx.reviews(failed=failed)
    shown = found[: ctx.config.review_limit]
    reviews.remember_listing(ctx, command.sender.id, shown)
    rows = [
        reviews.row_view(ctx, n, owner, item, _at(ctx, item.at))
        for n, (owner, item) in enumerate(shown, start=1)
    ]
    agenda = await ctx.agenda(failed=failed)
    await ctx.reply(
        "admin/reviews",
        items=rows,
        total=len(found),
        failed=sorted(set(failed)),
        agenda=report.agenda_rows(ctx, [item for _, item in agenda[: ctx.config.review_limit]]),
        agenda_more=max(0, len(agenda) - ctx.config.review_limit),
    )


@plugin.command("resolve", keep_args=True)
async def resolve(command: Command, ctx: Ctx) -> None:
    """`resolve N[,M...]|all sent|resend|skip`, numbers from the operator's last listing."""
    w = ctx.state.words
    if len(command.args) < 2:
        return await usage(command, ctx)
    answer = command.args[-1]
    outcome = next((o for o in reviews.OUTCOMES if w.is_(o, answer)), None)
    if outcome is None:
        return await usage(command, ctx, "bad_outcome", answer)
    listed = reviews.listed(ctx, command.sender.id)
    picks = _items(command.args[:-1])
    chosen: list[list[str]] = []
    for pick in picks:
        if w.is_("all", pick):
            chosen = listed
            break
        if not pick.isdigit() or not 1 <= int(pick) <= len(listed):
            return await usage(command, ctx, "bad_number", pick)
        chosen.append(listed[int(pick) - 1])
    done = stale = others = 0
    for owner, kind, ref in chosen:
        if owner != plugin.name or kind != reviews.UNKNOWN:
            others += 1
        elif reviews.resolve_unknown(ctx, ref, outcome):
            done += 1
        else:
            stale += 1
    ctx.record("resolved", outcome=outcome, done=done, stale=stale, others=others)
    await ctx.reply(
        "admin/resolved",
        outcome=outcome,
        done=done,
        stale=stale,
        others=others,
        listed=bool(listed),
    )


# -- customers ------------------------------------------------------------------------------------
@plugin.command("find")
async def find(command: Command, ctx: Ctx) -> None:
    """Names are only for finding someone: every other command takes the id."""
    if not command.rest:
        return await usage(command, ctx)
    found, total = contacts.find(ctx, command.rest[:64])
    await ctx.reply("admin/found", query=command.rest[:64], contacts=found, total=total)


# -- the daily report -----------------------------------------------------------------------------
def _operators(ctx: Ctx) -> set[str]:
    return set(ctx.admins.ids())


@plugin.command("report", keep_args=True)
async def report_now(command: Command, ctx: Ctx) -> None:
    """`report` (yesterday), `report today`, `report 2026-11-20`."""
    w = ctx.state.words
    today = ctx.now.date()
    day, period = today - timedelta(days=1), "yesterday"
    if len(command.args) > 1:
        return await usage(command, ctx)
    if command.args:
        arg = command.args[0]
        if w.is_("today", arg):
            day, period = today, "today"
        elif not w.is_("yesterday", arg):
            try:
                day, period = date.fromisoformat(arg), "date"
            except ValueError:
                return await usage(command, ctx, "bad_day", arg)
    operators = _operators(ctx) | {command.sender.id}
    await ctx.reply("admin/report", **await report.report(ctx, day, period, operators))


@plugin.scheduled("0 9 * * *")
async def morning_report(ctx: Ctx) -> None:
    """Yesterday's numbers to every admin. Sent as an alert: neither a breaker nor "pause
    everything" should keep the operator in the dark."""
    admins = ctx.admins.ids()
    if not admins:
        ctx.log.warning("no admins: the morning report has nobody to go to")
        return
    day = (ctx.fire_time or ctx.now).date() - timedelta(days=1)
    variables = await report.report(ctx, day, "yesterday", set(admins))
    ctx.alert("admin/report", **variables)
    ctx.record("report_sent", day=day.isoformat(), admins=len(admins))


# -- admins ----------------------------------------------------------------------------------------
@plugin.command("admins", keep_args=True)
async def admins(command: Command, ctx: Ctx) -> None:
    registry = ctx.admins
    bound = dict(registry.kv.items("admin:"))
    rows = []
    for admin_id in registry.ids():
        info = bound.get(f"admin:{admin_id}")
        details = info if isinstance(info, dict) else {}
        rows.append(
            {
                "id": admin_id,
                "configured": admin_id in registry.configured,
                "name": str(details.get("name", "")),
                "at": str(details.get("at", ""))[:16].replace("T", " "),
                "me": admin_id == command.sender.id,
            }
        )
    await ctx.reply("admin/admins", admins=rows)


@plugin.command("unbind", keep_args=True)
async def unbind(command: Command, ctx: Ctx) -> None:
    if len(command.args) != 1:
        return await usage(command, ctx)
    registry, target = ctx.admins, command.args[0]
    if target in registry.configured:
        outcome = "configured"  # BOT_ADMIN_IDS is the operator's file, not ours to change
    elif target not in registry.ids():
        outcome = "unknown"
    elif len(registry.ids()) <= 1:
        outcome = "last"
    else:
        registry.unbind(target)
        ctx.record("admin_unbound", contact_id=target)
        outcome = "done"
    await ctx.reply("admin/unbound", who=target[:80], outcome=outcome)
