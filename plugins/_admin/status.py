"""The status snapshot: what the operator's status command shows, in chat and on the
command line (`status --json` prints it as is)."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from pond import ALL_CHATS, Context


def _at(ctx: Context, ts: float) -> str:
    return datetime.fromtimestamp(ts, ctx.settings.bot.timezone).strftime("%m-%d %H:%M")


async def snapshot(ctx: Context) -> dict[str, Any]:
    """Everything the status command shows, JSON-friendly. In the running bot the live
    values are used; on the command line's offline App, the last heartbeat's."""
    now = ctx.now
    live = ctx.liveness()
    started, running = live.started_at, live.running
    counts = ctx.ledger.counts(now.date().isoformat())
    caps = ctx.settings.outbox.caps()
    failed: list[str] = []
    reviews = await ctx.reviews(failed=failed)
    active = ctx.pauses.active()
    everything = active.pop(ALL_CHATS, None)
    breaker_until = ctx.outbox.breaker_until
    return {
        "now": _at(ctx, now.timestamp()),
        "here": live.here,
        "running": running,
        "started_at": _at(ctx, started) if started else "",
        "uptime_min": round((now.timestamp() - started) / 60) if started and running else None,
        "last_seen": _at(ctx, live.last_seen) if live.last_seen else "",
        "stopped_cleanly": live.stopped_cleanly,
        "transport": live.transport,
        "connected": live.connected and running,
        "login": _login_state(ctx),
        "queue": live.queue,
        "bulk": _bulk_jobs(ctx),
        "counters": [{"kind": k, "n": counts.get(k, 0), "cap": cap} for k, cap in caps.items()],
        "breaker": {
            "open": ctx.outbox.breaker_open(),
            "until": _at(ctx, breaker_until) if breaker_until else "",
            "trips": _int(ctx.outbox.state.get("breaker_trips", 0)),
        },
        "paused_all": _pause(ctx, ALL_CHATS, everything) if everything else None,
        "paused": [_pause(ctx, chat, entry) for chat, entry in sorted(active.items())],
        "reviews": len(reviews),
        "review_errors": failed,
        "admins": len(ctx.admins.ids()),
        "disk_free_mb": _disk_free_mb(ctx.settings.bot.data_dir),
    }


def _login_state(ctx: Context) -> dict[str, str]:
    latest: dict[str, Any] | None = None
    for status in ("login", "logout", "disconnected", "reconnected"):
        rows = ctx.sql.events(kind=f"transport.{status}", newest_first=True, limit=1)
        if rows and (latest is None or rows[0]["ts"] > latest["ts"]):
            latest = dict(rows[0])
    if latest is None:
        return {"state": "", "at": "", "name": ""}
    ts = latest["ts"]
    assert isinstance(ts, datetime)
    data = latest.get("data")
    return {
        "state": str(latest["kind"]).removeprefix("transport."),
        "at": _at(ctx, ts.timestamp()),
        "name": str(data.get("name", "")) if isinstance(data, dict) else "",
    }


def _bulk_jobs(ctx: Context) -> list[dict[str, Any]]:
    jobs = []
    for job in ctx.ledger.active_jobs():
        summary = ctx.ledger.summary(job)
        jobs.append(
            {"job": job, "pending": summary.get("pending", 0), "sent": summary.get("sent", 0)}
        )
    return jobs


def _pause(ctx: Context, chat_id: str, entry: tuple[float | None, str]) -> dict[str, str]:
    until, reason = entry
    return {"chat_id": chat_id, "reason": reason, "until": _at(ctx, until) if until else ""}


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _disk_free_mb(path: Path) -> int:
    try:
        return int(shutil.disk_usage(path).free // 1_000_000)
    except OSError:
        return -1
