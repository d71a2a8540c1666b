"""Progress, what a campaign is waiting for, and when it will finish.

The finish time is a forecast from the governor's own settings: seconds per message (token
bucket, switch gap, typing delay, bulk pauses), quiet hours, and the daily caps (what is
left today, then a full day's cap per day). Campaigns ahead in the outbox's queue (oldest
first) are counted in front of this one. Replies and other traffic share the same budget,
so the forecast is a best case, and says so."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pond import Context, DailyWindow, OutboxSettings, waits_for_staff

from . import state

BAR_WIDTH = 20
_FMT = "%m-%d %H:%M"


def when(ctx: Context, ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, ctx.clock.tz).strftime(_FMT)


def seconds_per_message(s: OutboxSettings, text_length: int) -> float:
    """The governor waits the longest of: a token, the switch gap, the typing delay; and
    every OUTBOX_BULK_PAUSE_EVERY bulk messages it takes a longer pause."""
    token = 60.0 / s.rate_per_min if s.rate_per_min > 0 else 0.0
    switch = (s.switch_gap_s.low + s.switch_gap_s.high) / 2
    typing = min(s.typing_max_s, text_length / s.typing_chars_per_s) if s.typing_chars_per_s else 0
    pauses = (s.bulk_pause_s.low + s.bulk_pause_s.high) / 2 / s.bulk_pause_every
    return max(token, switch, typing, 0.05) + (pauses if s.bulk_pause_every else 0.0)


def _next_midnight(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def _quiet_start_after(t: datetime, quiet: DailyWindow) -> datetime:
    if not quiet.enabled or quiet.start == quiet.end:
        return t + timedelta(days=3650)
    start = t.replace(hour=quiet.start.hour, minute=quiet.start.minute, second=0, microsecond=0)
    return start if start > t else start + timedelta(days=1)


def _quiet_end_after(t: datetime, quiet: DailyWindow) -> datetime:
    end = t.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
    return end if end > t else end + timedelta(days=1)


def finish_time(
    start: datetime,
    remaining: int,
    per_message: float,
    quiet: DailyWindow,
    cap_today: int,
    cap_daily: int,
) -> datetime | None:
    """When `remaining` messages are out, sending from `start`; None if never (cap 0)."""
    if remaining <= 0:
        return start
    t, day, left, cap_left = start, start.date(), remaining, cap_today
    for _ in range(20_000):
        if t.date() != day:
            day, cap_left = t.date(), cap_daily
        if quiet.contains(t.time()):
            t = _quiet_end_after(t, quiet)
            continue
        if cap_left <= 0:
            if cap_daily <= 0:
                return None
            t = _next_midnight(t) + timedelta(seconds=60)  # the governor resumes at 00:01
            continue
        boundary = min(_next_midnight(t), _quiet_start_after(t, quiet))
        fit = int((boundary - t).total_seconds() // per_message)
        if fit <= 0:
            t = boundary
            continue
        n = min(left, cap_left, fit)
        t += timedelta(seconds=n * per_message)
        left -= n
        cap_left -= n
        if left == 0:
            return t
        if n == fit:
            t = boundary
    return None


def caps_left(ctx: Context) -> tuple[int, int]:
    """(slots left today, slots per day) for bulk sends: the tighter of broadcast and send."""
    s = ctx.settings.outbox
    used = ctx.ledger.counts(ctx.clock.now().date().isoformat())
    today = min(s.cap_broadcast - used.get("broadcast", 0), s.cap_send - used.get("send", 0))
    return max(0, today), max(0, min(s.cap_broadcast, s.cap_send))


def rows_ahead(ctx: Context, job: str) -> tuple[int, list[str]]:
    """Pending rows of active bulk jobs the outbox serves before `job` (oldest first)."""
    jobs = ctx.ledger.active_jobs()
    ahead = jobs[: jobs.index(job)] if job in jobs else jobs
    counts = [(j, ctx.ledger.summary(j).get("pending", 0)) for j in ahead if j != job]
    return sum(n for _, n in counts), [j for j, n in counts if n]


def forecast(
    ctx: Context, remaining: int, text_length: int, *, start: datetime | None = None, job: str = ""
) -> dict[str, Any]:
    """ETA data for templates: eta ("11-25 14:00"), days, today/daily slots, queue ahead."""
    now = ctx.clock.now()
    begin = max(start or now, now)
    breaker = ctx.outbox.breaker_until
    if breaker > begin.timestamp():
        begin = datetime.fromtimestamp(breaker, ctx.clock.tz)
    today, daily = caps_left(ctx)
    if begin.date() != now.date():
        today = daily
    ahead, ahead_jobs = rows_ahead(ctx, job) if job else (0, [])
    per = seconds_per_message(ctx.settings.outbox, text_length)
    quiet = ctx.settings.outbox.quiet_hours
    done = finish_time(begin, ahead + remaining, per, quiet, today, daily)
    first = finish_time(begin, ahead + 1, per, quiet, today, daily) if remaining else None
    return {
        "eta": done.strftime(_FMT) if done else "",
        "eta_ts": done.timestamp() if done else 0.0,
        "first": first.strftime(_FMT) if first else "",
        "days": (done.date() - begin.date()).days + 1 if done else 0,
        "cap_today": today,
        "cap_daily": daily,
        "per_hour": int(3600 / per),
        "ahead": ahead,
        "ahead_jobs": [j.removeprefix("broadcasts.") for j in ahead_jobs],
        "never": done is None and remaining > 0,
    }


def bar(done: int, total: int) -> tuple[str, int]:
    pct = int(100 * done / total) if total else 100
    filled = round(BAR_WIDTH * done / total) if total else BAR_WIDTH
    return "█" * filled + "░" * (BAR_WIDTH - filled), pct


def waiting(ctx: Context, record: state.Record, summary: dict[str, int], online: bool) -> str:
    """Why nothing is moving right now ("" when it is sending)."""
    status = record["status"]
    if status == state.PAUSED:
        return "paused"
    if status == state.SCHEDULED:
        return "scheduled"
    if status != state.RUNNING or not summary.get("pending"):
        return ""
    now = ctx.clock.now()
    if not online:
        return "no_bot"
    if ctx.outbox.breaker_open():
        return "breaker"
    if ctx.settings.outbox.quiet_hours.contains(now.time()):
        return "quiet"
    if caps_left(ctx)[0] <= 0:
        return "cap"
    if rows_ahead(ctx, f"broadcasts.{record['id']}")[0]:
        return "queued"
    return ""


def staff_waiting(ctx: Context, job: str) -> int:
    """Rows handed to staff as a task they confirm in the client (企业微信 群发): journaled
    as skipped with a ":staff_confirm" reason until the task's result for them comes in."""
    return sum(n for r, n in ctx.ledger.skipped_reasons(job).items() if waits_for_staff(r))


def progress(ctx: Context, record: state.Record, *, online: bool = True) -> dict[str, Any]:
    """Counts straight from the journal, a bar, the reason for waiting and the ETA."""
    job = f"broadcasts.{record['id']}"
    summary = ctx.ledger.summary(job)
    staff = staff_waiting(ctx, job)
    total = sum(summary.values())
    settled = sum(summary.get(k, 0) for k in ("sent", "skipped", "failed", "unknown")) - staff
    drawn, pct = bar(settled, total)
    pending = summary.get("pending", 0)
    data: dict[str, Any] = {
        "id": record["id"],
        "title": record["title"],
        "status": record["status"],
        "total": total,
        "sent": summary.get("sent", 0),
        "skipped": summary.get("skipped", 0) - staff,
        "staff": staff,
        "failed": summary.get("failed", 0),
        "unknown": summary.get("unknown", 0),
        "pending": pending,
        "held": summary.get("held", 0),
        "sending": summary.get("sending", 0),
        "settled": settled,
        "bar": drawn,
        "pct": pct,
        "waiting": waiting(ctx, record, summary, online),
        "start_at": when(ctx, record.get("start_at")),
        "started_at": when(ctx, record.get("started_at")),
        "finished_at": when(ctx, record.get("finished_at")),
        "eta": "",
        "ahead": 0,
        "quiet_end": ctx.settings.outbox.quiet_hours.end.strftime("%H:%M"),
        "breaker_until": when(ctx, ctx.outbox.breaker_until),
        "note": record.get("note") or {},
    }
    if record["status"] == state.RUNNING and pending:
        rows = ctx.ledger.pending(job, limit=1)
        length = len(rows[0].action.text) if rows else 0
        data.update(
            {k: v for k, v in forecast(ctx, pending, length, job=job).items() if k != "first"}
        )
    return data
