"""The status snapshot (shared by the chat command and the command line) and the
collection of review items and agenda items from every plugin."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pond.context import Context
from pond.health.common import at, bot_pid, data_of, health_config, read_heartbeat
from pond.pauses import ALL
from pond.plugin import AgendaItem, ReviewItem
from pond.transports.offline import OfflineTransport

if TYPE_CHECKING:
    from pond.app import App

log = logging.getLogger("pond.health")

CAP_KINDS = ("send", "broadcast", "accept_friend", "add_friend", "invite", "kick", "post")


async def collect_reviews(app: App) -> tuple[list[tuple[str, ReviewItem]], list[str]]:
    """Every plugin's review items as (plugin, item), oldest first, and the plugins whose
    source failed (logged; the others are still listed)."""
    found: list[tuple[str, ReviewItem]] = []
    failed: list[str] = []
    for plugin in app.plugins.values():
        for source in plugin.review_sources:
            try:
                items = await source(Context(app, plugin))
            except Exception as error:
                log.error(
                    "review source of %s failed: %s: %s", plugin.name, type(error).__name__, error
                )
                failed.append(plugin.name)
                continue
            found.extend((plugin.name, item) for item in items)
    found.sort(key=lambda pair: (pair[1].at or 0.0, pair[0], pair[1].ref))
    return found, failed


async def collect_agenda(app: App) -> tuple[list[tuple[str, AgendaItem]], list[str]]:
    found: list[tuple[str, AgendaItem]] = []
    failed: list[str] = []
    for plugin in app.plugins.values():
        for source in plugin.agenda_sources:
            try:
                items = await source(Context(app, plugin))
            except Exception as error:
                log.error(
                    "agenda source of %s failed: %s: %s", plugin.name, type(error).__name__, error
                )
                failed.append(plugin.name)
                continue
            found.extend((plugin.name, item) for item in items)
    found.sort(key=lambda pair: (pair[1].at, pair[0], pair[1].ref))
    return found, failed


async def snapshot(app: App) -> dict[str, Any]:
    """Everything the status command shows, JSON-friendly. In the running bot the live
    values are used; on the command line's offline App, the last heartbeat's."""
    now = app.clock.now()
    config = health_config(app.settings)
    here = not isinstance(app.transport, OfflineTransport)
    beat = read_heartbeat(app.store) or {}
    started: float | None
    last_seen: float | None
    if here:
        running, started = True, (app.started_at or now).timestamp()
        transport, connected = app.transport.name, bool(app.transport.connected)
        queue: int | None = app.outbox.pending_count()
        last_seen = now.timestamp()
    else:
        running = bot_pid(app.settings.bot.data_dir, beat, now, config) is not None
        started = float(beat["started_at"]) if "started_at" in beat else None
        transport, connected = str(beat.get("transport", "")), bool(beat.get("connected"))
        queue = int(beat["pending"]) if "pending" in beat else None
        last_seen = float(beat["beat_at"]) if "beat_at" in beat else None
    day = now.date().isoformat()
    counts = app.ledger.counts(day)
    caps = {kind: int(getattr(app.settings.outbox, f"cap_{kind}")) for kind in CAP_KINDS}
    reviews, failed = await collect_reviews(app)
    active = app.pauses.active()
    everything = active.pop(ALL, None)
    breaker_until = app.outbox.breaker_until
    return {
        "now": at(app, now.timestamp()),
        "here": here,
        "running": running,
        "started_at": at(app, started) if started else "",
        "uptime_min": round((now.timestamp() - started) / 60) if started and running else None,
        "last_seen": at(app, last_seen) if last_seen else "",
        "stopped_cleanly": bool(beat.get("stopped")) if beat and not here else None,
        "transport": transport,
        "connected": connected and running,
        "login": _login_state(app),
        "queue": queue,
        "bulk": _bulk_jobs(app),
        "counters": [{"kind": k, "n": counts.get(k, 0), "cap": caps[k]} for k in CAP_KINDS],
        "breaker": {
            "open": app.outbox.breaker_open(),
            "until": at(app, breaker_until) if breaker_until else "",
            "trips": _int(app.outbox.state.get("breaker_trips", 0)),
        },
        "paused_all": _pause(app, ALL, everything) if everything else None,
        "paused": [_pause(app, chat, entry) for chat, entry in sorted(active.items())],
        "reviews": len(reviews),
        "review_errors": failed,
        "admins": len(app.admins.ids()),
        "disk_free_mb": _disk_free_mb(app.settings.bot.data_dir),
    }


def _login_state(app: App) -> dict[str, str]:
    latest: dict[str, Any] | None = None
    for status in ("login", "logout", "disconnected", "reconnected"):
        rows = app.store.sql.events(kind=f"transport.{status}", newest_first=True, limit=1)
        if rows and (latest is None or rows[0]["ts"] > latest["ts"]):
            latest = dict(rows[0])
    if latest is None:
        return {"state": "", "at": "", "name": ""}
    ts = latest["ts"]
    assert isinstance(ts, datetime)
    return {
        "state": str(latest["kind"]).removeprefix("transport."),
        "at": at(app, ts.timestamp()),
        "name": str(data_of(latest).get("name", "")),
    }


def _bulk_jobs(app: App) -> list[dict[str, Any]]:
    jobs = []
    for job in app.ledger.active_jobs():
        summary = app.ledger.summary(job)
        jobs.append(
            {"job": job, "pending": summary.get("pending", 0), "sent": summary.get("sent", 0)}
        )
    return jobs


def _pause(app: App, chat_id: str, entry: tuple[float | None, str]) -> dict[str, str]:
    until, reason = entry
    return {"chat_id": chat_id, "reason": reason, "until": at(app, until) if until else ""}


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _disk_free_mb(path: Path) -> int:
    try:
        return int(shutil.disk_usage(path).free // 1_000_000)
    except OSError:
        return -1
