"""Standard five-field crontab for APScheduler 3, which numbers weekdays from Monday = 0:
a plain "30 9 * * 1" would fire on Tuesdays. Every cron in pond (job overrides, calendars,
room schedules) goes through here, so operators can write crontab as they know it."""

from __future__ import annotations

from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def standard_cron(expr: str) -> str:
    """Rewrite the day-of-week field of a standard crontab (0 or 7 = Sunday, 1 = Monday) into
    day names: APScheduler 3 counts 0 as Monday, so "30 9 * * 1" would fire on Tuesdays."""
    fields = expr.split()
    if len(fields) != 5 or fields[4] == "*" or any(c.isalpha() for c in fields[4]):
        return expr
    days: set[int] = set()
    for item in fields[4].split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        else:
            low, _, high = span.partition("-")
            first = int(low)
            last = int(high) if high else (6 if step_text else first)
        if not (0 <= first <= 7 and 0 <= last <= 7 and first <= last and step >= 1):
            raise ValueError(f"bad day of week {item!r}")
        days.update(day % 7 for day in range(first, last + 1, step))
    fields[4] = ",".join(_DAY_NAMES[day] for day in sorted(days))
    return " ".join(fields)


def cron_trigger(expr: str, tz: tzinfo) -> CronTrigger:
    """A trigger from a standard crontab line (0 or 7 = Sunday). ValueError when malformed."""
    return CronTrigger.from_crontab(standard_cron(expr), timezone=tz)
