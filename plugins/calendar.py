"""Content calendar (朋友圈 maintenance): scheduled Moments-style posts, key dates (节日, 中秋,
618 ...), launch sequences (T-3d teaser ... T+1d last call), capability-aware publishing, each
post published at most once across restarts and replays.

Data (copy, edited by operators): persona/calendar/calendar.toml lists posts and launches,
persona/calendar/holidays.toml names the key dates (lunar dates and solar terms resolved by
lunar-python), persona/calendar/<name>.j2 holds each post's copy, persona/calendar/commands.toml
the Chinese command names. A bad file stops start-up naming file, post id and field; a bad
edit while running keeps the last good calendar and alerts the admins.

Publishing: where the transport can post to Moments (capability `moments`), a POST action;
otherwise, by CALENDAR_FALLBACK or the post's own `fallback`, a Moments-style broadcast to
the post's rooms/segment (at-most-once journal), or a hand-off to the admins, who post by
hand and confirm with a command (reminded once). Posts are marketing: quiet hours defer them.

Job: calendar.tick runs on its own trigger (next post, staff reminders, a look at the files
every CALENDAR_RELOAD_MIN minutes, midnight). A post more than CALENDAR_GRACE_MIN late (the
bot was down) is reported to the admins as missed, never sent late.
Commands: upcoming_posts (next 7 days, or one post in full), post_done, post_skip.
Persona: calendar/* keys below, plus the post keys the calendar names.
For other code (listings, scripts): scheduled_posts(ctx, day), pending_staff_posts(ctx), with
the calendar's Context (`app.context("calendar")`).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from plugins._calendar.dates import DateError
from plugins._calendar.model import FALLBACKS, CalendarError
from plugins._calendar.publishing import CalendarConfig, Settings
from plugins._calendar.runtime import CalendarTrigger, Ctx, Runtime
from pond import (
    AgendaItem,
    Command,
    ConfigError,
    Context,
    Plugin,
    Problem,
    ReviewItem,
    RowStatus,
)

log = logging.getLogger("pond.plugins.calendar")


OWN_KEYS = (
    "calendar/staff_post",
    "calendar/staff_reminder",
    "calendar/missed_alert",
    "calendar/failed_alert",
    "calendar/reload_alert",
    "calendar/upcoming",
    "calendar/post_detail",
    "calendar/post_unknown",
    "calendar/confirmed",
    "calendar/skipped",
    "calendar/confirm_unknown",
)
TICK_JOB = "calendar.tick"
MAX_DAYS = 31
PAGE = 12


def build_state(ctx: Ctx) -> Runtime:
    """The calendar of one App, its files read and checked (a problem stops start-up,
    naming file, post id and field)."""
    rt = Runtime(ctx, calendar_settings(ctx))
    try:
        rt.start()
    except (CalendarError, DateError) as error:
        raise Problem(
            "calendar.invalid", "calendar data is invalid:\n{problems}", problems=str(error)
        ) from None
    log.info(
        "calendar: %d posts from %s",
        len(rt.calendar.entries if rt.calendar else {}),
        rt.settings.path,
    )
    return rt


plugin = Plugin(
    "calendar",
    persona=OWN_KEYS,
    # The calendar file names each post's copy: calendar/<name>, checked when it loads.
    persona_prefixes=["calendar/"],
    config=CalendarConfig,
    state=build_state,
    description="content calendar: scheduled posts, key dates, launches",
)


def calendar_settings(ctx: Context[CalendarConfig, Any]) -> Settings:
    """The checked settings (also used by scripts/calendar_preview.py)."""
    config: CalendarConfig = ctx.config
    if config.fallback not in FALLBACKS:
        raise ConfigError("CALENDAR_FALLBACK", " or ".join(FALLBACKS), config.fallback)
    for name, value in (("GRACE_MIN", config.grace_min), ("REMIND_MIN", config.remind_min)):
        if value < 0:
            raise ConfigError(f"CALENDAR_{name}", "minutes, 0 or more", str(value))
    if config.reload_min < 0:
        raise ConfigError("CALENDAR_RELOAD_MIN", "minutes, 0 (off) or more", str(config.reload_min))
    path = ctx.settings.bot.persona_dir / config.file
    return Settings(
        path=path,
        fallback=config.fallback,
        grace=timedelta(minutes=config.grace_min),
        remind=timedelta(minutes=config.remind_min) if config.remind_min else timedelta(days=3650),
        reload_min=config.reload_min,
        own_keys=frozenset(OWN_KEYS),
    )


def runtime(ctx: Ctx) -> Runtime | None:
    """The running calendar (the plugin's state); None where the bot is not running (the
    command line), whose App never started."""
    return ctx.state if ctx.running else None


@plugin.on_startup()
async def start(ctx: Ctx) -> None:
    rt = ctx.state
    if not ctx.has_job(TICK_JOB):
        log.warning("%s is off: the calendar only lists posts, it publishes nothing", TICK_JOB)
        return
    trigger = CalendarTrigger(rt.next_fire)
    ctx.set_trigger(TICK_JOB, trigger)
    # After a reload outside a tick (the listing command), wake up for the new times now.
    rt.on_change = lambda: rt.ctx.set_trigger(TICK_JOB, trigger)
    # Catch up on what fell due while the bot was down (published within grace, else reported).
    rt.process(ctx.now)
    # Catch up on what fell due while the bot was down (published within grace, else reported).
    rt.process(ctx.now)


@plugin.scheduled("*/5 * * * *")
async def tick(ctx: Ctx) -> None:
    """Replaced at start-up by the calendar's own trigger; a replayed fire time is a no-op."""
    rt = ctx.state
    rt.reload_if_changed()
    rt.process(ctx.now)


# -- operator commands ---------------------------------------------------------------------------


@plugin.command("upcoming_posts", keep_args=True)
async def upcoming_posts(cmd: Command, ctx: Ctx) -> None:
    """The next 7 days (or N days), or one post in full: `<command> [days | post id]`."""
    rt = runtime(ctx)
    if rt is None or rt.calendar is None:
        return
    problems = rt.reload_if_changed()
    arg = cmd.args[0] if cmd.args else ""
    if arg and not arg.isdigit():
        await _detail(rt, arg, ctx)
        return
    days = max(1, min(MAX_DAYS, int(arg or 7)))
    items = [{**info, "text": _preview(rt, occ)} for occ, info in rt.upcoming(ctx.now, days)]
    # One WeChat message holds a dozen posts comfortably; a month goes out in pages.
    pages = [items[i : i + PAGE] for i in range(0, len(items), PAGE)] or [[]]
    waiting = [_pending_view(rt, p, ctx.now) for p in rt.pending()]
    horizon = ctx.now + timedelta(days=days)
    broadcasts = [
        {
            "date": item.at.strftime("%m-%d"),
            "time": item.at.strftime("%H:%M"),
            "kind": item.kind,
            "id": item.detail,
            "title": item.title,
            "count": item.count,
        }
        for owner, item in await ctx.agenda()
        if owner != plugin.name and item.kind.startswith("broadcast") and item.at <= horizon
    ]
    words = rt.command_words()
    for number, page in enumerate(pages, 1):
        await ctx.reply(
            "calendar/upcoming",
            days=days,
            items=page,
            count=len(items),
            problems=len(problems),
            page=number,
            pages=len(pages),
            waiting=waiting if number == 1 else [],
            broadcasts=broadcasts if number == 1 else [],
            confirm=words["post_done"],
            skip=words["post_skip"],
        )


async def _detail(rt: Runtime, post_id: str, ctx: Ctx) -> None:
    assert rt.calendar is not None
    entry = rt.calendar.entries.get(post_id)
    if entry is None:
        await ctx.reply("calendar/post_unknown", post_id=post_id, ids=sorted(rt.calendar.entries))
        return
    horizon = ctx.now + timedelta(days=400)
    found = [o for o in rt.calendar.occurrences(ctx.now, horizon) if o.entry.id == post_id]
    upcoming = [rt.describe(o, ctx.now) for o in found[:5]]
    await ctx.reply(
        "calendar/post_detail",
        post_id=entry.id,
        title=entry.title,
        when=entry.when_parts(),
        channel=entry.channel,
        modes=rt.modes(entry),
        rooms=list(entry.rooms),
        segment=entry.segment,
        images=[p.name for p in entry.images],
        link=entry.link.url if entry.link else "",
        upcoming=upcoming,
        text=_preview(rt, found[0]) if found else "",
    )


def _preview(rt: Runtime, occ: Any) -> str:
    try:
        return rt.render_preview(occ)
    except Exception as error:  # a template broken since the last check: say so, list the rest
        log.warning("preview of %s failed: %s", occ.entry.id, type(error).__name__)
        return ""


@plugin.command("post_done", keep_args=True)
async def post_done(cmd: Command, ctx: Ctx) -> None:
    """An admin posted a handed-over post by hand: `<command> <post id>`."""
    await _close(cmd, ctx, "confirmed", "calendar/confirmed")


@plugin.command("post_skip", keep_args=True)
async def post_skip(cmd: Command, ctx: Ctx) -> None:
    """An admin decided not to post a handed-over post: `<command> <post id>`."""
    await _close(cmd, ctx, "skipped", "calendar/skipped")


async def _close(cmd: Command, ctx: Ctx, status: str, key: str) -> None:
    rt = runtime(ctx)
    if rt is None:
        return
    post = cmd.rest.strip()
    pending = rt.pending()
    if not post and len(pending) == 1:
        post = pending[0]["post_id"]  # only one waiting: the command alone is enough
    done = rt.resolve(post, ctx.now, status, cmd.sender.id) if post else None
    if done is None:
        info = ctx.commands.catalog.info(cmd.name)
        await ctx.reply(
            "calendar/confirm_unknown",
            given=post,
            command=info.display,
            pending=[_pending_view(rt, p, ctx.now) for p in pending],
        )
        return
    entry = rt.calendar.entries.get(done["post_id"]) if rt.calendar else None
    await ctx.reply(
        key,
        post_id=done["post_id"],
        title=entry.title if entry else "",
        delay_min=done["delay_min"],
    )


# -- the operator's day: 待办 and the morning report ---------------------------------------------


def _listing_runtime(ctx: Ctx) -> Runtime | None:
    """The running calendar, or (on the command line, where start-up never ran) one read
    from the files just for this listing; None when the files cannot be read."""
    rt = runtime(ctx)
    if rt is not None:
        return rt
    try:
        rt = Runtime(ctx, calendar_settings(ctx))
        rt.start()
    except (CalendarError, DateError, ConfigError):
        return None
    return rt


@plugin.review_source()
async def staff_posts_waiting(ctx: Ctx) -> list[ReviewItem]:
    """Posts handed to the admins and not confirmed yet (read from the store: works offline)."""
    rt = _listing_runtime(ctx)
    titles = rt.calendar.entries if rt is not None and rt.calendar is not None else {}
    items = []
    for _, value in ctx.store.items("staff:"):
        if not isinstance(value, dict):
            continue
        post_id = str(value.get("post_id", ""))
        entry = titles.get(post_id)
        items.append(
            ReviewItem(
                kind="staff_post",
                ref=str(value.get("occ", post_id)),
                at=datetime.fromisoformat(str(value["handed_at"])).timestamp(),
                detail=post_id,
                title=entry.title if entry else "",
                command="post_done",
                args=(post_id,),
            )
        )
    return items


@plugin.agenda_source()
async def posts_today(ctx: Ctx) -> list[AgendaItem]:
    rt = _listing_runtime(ctx)
    if rt is None:
        return []
    found = []
    for info in rt.day(ctx.now.date(), ctx.now):
        at = datetime.fromisoformat(info["at"])
        if at < ctx.now or info["status"] != "scheduled":
            continue
        found.append(
            AgendaItem(
                at=at, kind="post", ref=info["post_id"], detail=info["post_id"], title=info["title"]
            )
        )
    return found


# -- for other plugins (listings, the daily summary) ---------------------------------------------


def scheduled_posts(ctx: Ctx, day: date) -> list[dict[str, Any]]:
    """The calendar's posts of `day` (bot timezone) in time order, [] when the calendar is not
    running. Each item is JSON-friendly:
    post_id, title, key, launch (id or ""), at (ISO), date "MM-DD", time "HH:MM", month, day,
    weekday (1 = Monday), modes (how it publishes on this transport: moments / broadcast /
    staff), rooms, segment, images (file names), link, quiet (inside quiet hours: deferred),
    status: scheduled | published | staff_task (a 企业微信 朋友圈 task staff have yet to
    publish) | handed | confirmed | skipped | expired | missed | failed |
    replaced (a key-date post took its place) | unpublished (its time passed before the
    calendar knew it), replaced_by, delivery ({"sent": n, "pending": n, ...} over its journal
    rows; the staff's copies are not counted)."""
    rt = runtime(ctx)
    if rt is None:
        return []
    return rt.day(day, ctx.now)


def pending_staff_posts(ctx: Ctx) -> list[dict[str, Any]]:
    """Posts handed to the admins and not yet confirmed (or skipped), oldest first:
    post_id, title, at (ISO, the scheduled time), date, time, handed_at (ISO), waiting_min,
    delivered (the hand-off reached at least one admin), reminded."""
    rt = runtime(ctx)
    if rt is None:
        return []
    now = ctx.now
    return [_pending_view(rt, item, now) for item in rt.pending()]


def _pending_view(rt: Runtime, item: dict[str, Any], now: datetime) -> dict[str, Any]:
    at = datetime.fromisoformat(item["at"])
    handed = datetime.fromisoformat(item["handed_at"])
    entry = rt.calendar.entries.get(item["post_id"]) if rt.calendar else None
    delivered = bool(rt.ctx.ledger.rows_of(item["job"], RowStatus.SENT))
    return {
        "post_id": item["post_id"],
        "title": entry.title if entry else "",
        "at": item["at"],
        "date": at.strftime("%m-%d"),
        "time": at.strftime("%H:%M"),
        "handed_at": item["handed_at"],
        "waiting_min": int((now - handed).total_seconds() // 60),
        "delivered": delivered,
        "reminded": bool(item.get("reminded")),
    }


__all__ = [
    "CalendarConfig",
    "calendar_settings",
    "pending_staff_posts",
    "plugin",
    "runtime",
    "scheduled_posts",
]
