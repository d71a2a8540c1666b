"""The calendar at run time: load and hot-reload the data, decide when to wake up, find what
is due, and answer listings. Publishing and the staff hand-off are in publishing.py.

Idempotence: an occurrence is identified by (post id, scheduled time). Its journal jobs are
named `calendar:<post id>@<time>#<part>`, and the outbox journal adds a recipient to a job at
most once, so publishing the same occurrence twice (a replayed tick, a restart between
enqueueing and noting it) cannot reach anyone twice. The plugin's own record of the
occurrence (`occ:<id>` in its store) is written after the journal, and consulted first.

Missed runs: the last moment the calendar was looked at is kept (`watermark`). On start and
at every tick, occurrences since then are published if at most `grace_min` late, otherwise
reported to the admins as missed (and never sent late)."""

from __future__ import annotations

import bisect
import logging
import os
import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.base import BaseTrigger

from plugins._calendar.dates import DateError, Holidays
from plugins._calendar.model import Calendar, CalendarError, Entry, Occurrence
from plugins._calendar.parse import load_calendar
from plugins._calendar.publishing import (
    CalendarConfig,
    Publisher,
    Settings,
    brief,
    ceil_minute,
    when_fields,
)
from pond import Context, PersonaError, Problem, waits_for_staff

log = logging.getLogger("pond.plugins.calendar")

_UNDEFINED = re.compile(r"undefined variable '([^']+)'")
KEEP_RECORDS_DAYS = 120


def _say(code: str, english: str, **values: Any) -> str:
    """The catalogue's `calendar.<code>` text (persona/core/problems.toml)."""
    return str(Problem(f"calendar.{code}", english, **values))


MAX_LISTED_MISSED = 10


class CalendarTrigger(BaseTrigger):  # type: ignore[misc]  # apscheduler has no type hints
    """An APScheduler trigger that fires when the calendar has something to do: the next
    occurrence, a staff reminder, a periodic look at the file (hot reload), and midnight.
    It never runs dry (APScheduler drops a job whose trigger returns None)."""

    def __init__(self, next_fire: Callable[[datetime], datetime]) -> None:
        self._next_fire = next_fire

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        start = now
        if previous_fire_time is not None and previous_fire_time >= now:
            start = previous_fire_time + timedelta(seconds=1)
        return self._next_fire(start)

    def __str__(self) -> str:
        return "calendar"


class Runtime(Publisher):
    """The calendar of one App: data, wake-ups, the tick, listings (publishing: Publisher)."""

    def __init__(self, ctx: Ctx, settings: Settings) -> None:
        self.ctx = ctx  # the calendar's Context outside any event
        self.plugin = ctx.plugin
        self.settings = settings
        self.tz = ctx.settings.bot.timezone
        self.kv = ctx.store
        self.calendar: Calendar | None = None
        self.version = 0
        self.last_problem = ""
        self._snapshot: tuple[object, ...] = ()
        self._remind_at: dict[str, datetime] = {}
        self._fire_cache: tuple[object, datetime, list[datetime]] | None = None
        # Set by the plugin: tells a running scheduler that the wake-up times changed.
        self.on_change: Callable[[], None] = lambda: None

    @property
    def holidays_path(self) -> Path:
        return self.settings.path.parent / "holidays.toml"

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> Calendar:
        """Read and validate the files; raises CalendarError or DateError."""
        holidays = Holidays.load(self.holidays_path)
        return load_calendar(self.settings.path, holidays, self.tz, self.check_key)

    def start(self) -> None:
        self._snapshot = self.snapshot()
        self.calendar = self.load()
        self.version += 1
        self.refresh_reminders()

    def snapshot(self) -> tuple[object, ...]:
        def stat(path: Path) -> object:
            try:
                st = os.stat(path)
            except OSError:
                return None
            return (st.st_mtime_ns, st.st_size, st.st_ino)

        return (stat(self.settings.path), stat(self.holidays_path), self.ctx.persona.version)

    def reload_if_changed(self) -> list[str]:
        """Re-read the calendar when its files (or the persona) changed. A broken edit keeps
        the last good calendar and tells the admins once. Returns the problems, if any."""
        snapshot = self.snapshot()
        if snapshot == self._snapshot:
            return self.last_problem.splitlines() if self.last_problem else []
        self._snapshot = snapshot
        ctx = self.ctx
        try:
            calendar = self.load()
        except (CalendarError, DateError) as error:
            problems = getattr(error, "problems", None) or str(error).splitlines()
            text = "\n".join(problems)
            if text != self.last_problem:
                self.last_problem = text
                log.error("calendar change refused, the last good version keeps running:\n%s", text)
                ctx.record("reload_refused", problems=len(problems))
                ctx.alert(
                    "calendar/reload_alert",
                    file=str(self.settings.path),
                    problems=problems[:5],
                    count=len(problems),
                )
            return problems
        self.calendar = calendar
        self.version += 1
        self.last_problem = ""
        log.info("calendar reloaded: %d posts", len(calendar.entries))
        ctx.record("reloaded", posts=len(calendar.entries))
        self.on_change()
        return []

    def check_key(self, entry: Entry, variables: dict[str, Any]) -> str | None:
        """Lint one entry's persona key with the variables it will be rendered with."""
        persona = self.ctx.persona
        if entry.key in self.settings.own_keys:
            return _say(
                "own_key", "{key} is one of the calendar's own messages, not a post", key=entry.key
            )
        if self.ctx.check_keys([entry.key]):  # under calendar/ (declared) and with a file
            return _say(
                "unknown_key",
                "unknown persona key {key!r}: no file persona/{key}.j2",
                key=entry.key,
            )
        answer = str(entry.reply["answer"]) if entry.reply else ""
        if answer and not persona.has(answer):
            return _say(
                "reply_answer_unknown",
                "reply.answer: unknown persona key {key!r}: no file persona/{key}.j2",
                key=answer,
            )
        try:
            persona.render_variants(entry.key, **variables)
        except PersonaError as error:
            missing = _UNDEFINED.search(error.english)  # the developers' text names it
            if missing:
                return _say(
                    "var_missing",
                    "{key} needs a value for {name!r}: add vars = {{ {name} = ... }} "
                    "to this post ({error})",
                    key=entry.key,
                    name=missing.group(1),
                    error=error,
                )
            return _say(
                "render_failed",
                "{key} cannot be rendered with this post's vars: {error}",
                key=entry.key,
                error=error,
            )
        return None

    # -- when to wake up --------------------------------------------------------------------
    def next_fire(self, now: datetime) -> datetime:
        """The next moment the calendar has something to do, at or after `now`."""
        start = ceil_minute(now.astimezone(self.tz))
        # Asked again and again for later moments (the simulated clock asks at every step),
        # so the wake-ups of the next two days are listed once per change of the calendar.
        stamp = (self.version, tuple(sorted(self._remind_at.values())))
        cached = self._fire_cache
        if cached is None or cached[0] != stamp or not cached[1] <= start:
            cached = (stamp, start, self._wake_ups(start, start + timedelta(days=2)))
            self._fire_cache = cached
        times = cached[2]
        index = bisect.bisect_left(times, start)
        if index == len(times):  # past the listed days: list the next ones
            self._fire_cache = None
            return self.next_fire(start)
        return times[index]

    def _wake_ups(self, lo: datetime, hi: datetime) -> list[datetime]:
        day = datetime.combine(lo.date(), time(0), self.tz)
        found: set[datetime] = set()
        while day <= hi:
            day += timedelta(days=1)
            found.add(day)  # midnight: the trigger never runs dry
        step = self.settings.reload_min
        if step > 0:
            moment = datetime.combine(lo.date(), time(0), self.tz)
            while moment <= hi:
                if moment >= lo:
                    found.add(moment)
                moment += timedelta(minutes=step)
                if moment.date() != (moment - timedelta(minutes=step)).date():
                    moment = datetime.combine(moment.date(), time(0), self.tz)
        if self.calendar is not None:
            found.update(o.at for o in self.calendar.occurrences(lo - timedelta(minutes=1), hi))
        found.update(t for t in self._remind_at.values() if lo <= t <= hi)
        # Nothing past `hi`: the list must be complete up to its last element.
        return sorted(t for t in found if lo <= t <= hi)

    # -- the tick -------------------------------------------------------------------------------
    def process(self, now: datetime) -> None:
        """Publish what is due, report what was missed, remind staff. Synchronous on purpose:
        nothing else runs between checking an occurrence and noting it."""
        if self.calendar is None:
            return
        ctx = self.ctx
        grace = self.settings.grace
        mark = self._watermark()
        lo = (mark or now) - grace
        missed: list[Occurrence] = []
        for occ in self.calendar.occurrences(lo, now):
            if self.kv.get(f"occ:{occ.id}") is not None:
                continue
            late = now - occ.at
            if late <= grace:
                self.publish(ctx, occ, now)
            elif mark is not None and occ.at > mark:
                # It fell due while the bot was not running: too late to post now.
                self._note(occ, "missed", now, late_min=int(late.total_seconds() // 60))
                ctx.record("missed", post_id=occ.entry.id, at=occ.at.isoformat())
                missed.append(occ)
            # else: added to the file after its time had passed; nothing to catch up.
        if missed:
            log.warning("%d calendar post(s) missed while the bot was down", len(missed))
            ctx.alert(
                "calendar/missed_alert",
                posts=[brief(o) for o in missed[:MAX_LISTED_MISSED]],
                count=len(missed),
                grace=int(grace.total_seconds() // 60),
            )
        if mark is None or now > mark:
            self.kv.set("watermark", now.isoformat())
        self.remind(ctx, now)
        self._prune(now)

    def _watermark(self) -> datetime | None:
        raw = self.kv.get("watermark")
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None

    def _prune(self, now: datetime) -> None:
        today = now.date().isoformat()
        if self.kv.get("pruned_on") == today:
            return
        horizon = (now - timedelta(days=KEEP_RECORDS_DAYS)).isoformat()
        for key, value in self.kv.items("occ:"):
            if isinstance(value, dict) and str(value.get("at", "")) < horizon:
                self.kv.delete(key)
        self.kv.set("pruned_on", today)

    # -- listings ---------------------------------------------------------------------------------
    def describe(self, occ: Occurrence, now: datetime) -> dict[str, Any]:
        """One occurrence for listings and summaries (JSON-friendly, no message text)."""
        entry = occ.entry
        record = self.kv.get(f"occ:{occ.id}")
        if occ.replaced_by:
            status = "replaced"
        elif isinstance(record, dict):
            status = str(record.get("status", "published"))
        else:
            status = "scheduled" if occ.at > now else "unpublished"
        delivery: dict[str, int] = {}
        if isinstance(record, dict):
            for job in record.get("jobs", []):
                if "#s" in job:
                    continue  # the staff's copies are not deliveries of the post
                for state, n in self.ctx.ledger.summary(job).items():
                    delivery[state] = delivery.get(state, 0) + n
                staff = self.ctx.ledger.skipped_reasons(job).items()
                waiting = sum(n for reason, n in staff if waits_for_staff(reason))
                if waiting:
                    # In a task staff publish from the 企业微信 client: not skipped, waiting.
                    delivery["skipped"] -= waiting
                    delivery["staff"] = delivery.get("staff", 0) + waiting
            if delivery.get("staff") and status == "published":
                status = "staff_task"
        return {
            "post_id": entry.id,
            "title": entry.title,
            "key": entry.key,
            "launch": entry.launch,
            "at": occ.at.isoformat(),
            **when_fields(occ.at),
            "modes": self.modes(entry),
            "rooms": list(entry.rooms),
            "segment": entry.segment,
            "images": [p.name for p in entry.images],
            "link": entry.link.url if entry.link else "",
            "status": status,
            "replaced_by": occ.replaced_by,
            "quiet": self.ctx.settings.outbox.quiet_hours.contains(occ.at.time()),
            "delivery": delivery,
        }

    def upcoming(self, now: datetime, days: int) -> list[tuple[Occurrence, dict[str, Any]]]:
        if self.calendar is None:
            return []
        found = self.calendar.occurrences(now, now + timedelta(days=days), include_replaced=True)
        return [(occ, self.describe(occ, now)) for occ in found]

    def day(self, day: date, now: datetime) -> list[dict[str, Any]]:
        if self.calendar is None:
            return []
        lo = datetime.combine(day, time(0), self.tz) - timedelta(seconds=1)
        hi = datetime.combine(day, time(23, 59), self.tz)
        found = self.calendar.occurrences(lo, hi, include_replaced=True)
        return [self.describe(occ, now) for occ in found]

    def render_preview(self, occ: Occurrence) -> str:
        """The text as the brand would post it (a separate chat id keeps the variant memory
        of the real Moments chat untouched)."""
        variables = {**occ.builtins(), **occ.entry.vars}
        return self.ctx.render(occ.entry.key, chat_id="preview:calendar", **variables).text

    def render_all(self, occ: Occurrence) -> list[str]:
        """Every variant of the post's text for this occurrence (one is picked when posting)."""
        variables = {**occ.builtins(), **occ.entry.vars}
        return [r.text for r in self.ctx.persona.render_variants(occ.entry.key, **variables)]


# The calendar plugin's Context: its config, and its Runtime as the plugin's state.
Ctx = Context[CalendarConfig, Runtime]
