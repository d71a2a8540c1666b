"""Shared by the health modules: settings, the heartbeat row and how to read it, whether
the bot runs (liveness), and small formatting helpers."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pond.config import Settings, parse_section, setting
from pond.store import Store
from pond.store import lock as instance_lock

if TYPE_CHECKING:
    from pond.app import App

NAMESPACE = "health"
HEARTBEAT_KEY = "heartbeat"
HEARTBEAT_FILE = "heartbeat.json"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    heartbeat_s: float = setting(30.0, gt=0)
    stale_after_s: float = setting(120.0, gt=0)  # an older heartbeat: the bot is not running
    mailbox_poll_s: float = setting(1.0, gt=0)  # how often the bot looks for CLI requests
    disk_min_mb: int = 500  # alert when the data dir's disk has less free space (once a day)
    error_alert_min: float = 60.0  # at most one "handler errors" alert per this many minutes
    queue_alert: int = 200  # alert when this many actions wait in the outbox (0 = off)


def health_config(settings: Settings) -> HealthConfig:
    return parse_section(HealthConfig, "HEALTH", settings.raw)


# -- the heartbeat row --------------------------------------------------------------------------
def read_heartbeat(store: Store) -> dict[str, Any] | None:
    beat = store.namespace(NAMESPACE).get(HEARTBEAT_KEY)
    return beat if isinstance(beat, dict) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return False
    return True


def is_live(beat: dict[str, Any] | None, now: datetime, config: HealthConfig) -> bool:
    """Whether the heartbeat says a bot is running on this data right now."""
    if not beat or beat.get("stopped"):
        return False
    age = now.timestamp() - float(beat.get("beat_at", 0.0))
    # The console simulator's clock runs ahead of real time: a beat "from the future" is fresh.
    if age > config.stale_after_s:
        return False
    if beat.get("host") == socket.gethostname():
        return pid_alive(int(beat.get("pid", 0)))
    return True


def bot_pid(
    data_dir: Path, beat: dict[str, Any] | None, now: datetime, config: HealthConfig
) -> int | None:
    """The pid of the bot running on `data_dir` (0 if unknown), or None. The data dir's
    lock decides (a held lock is a running bot, even one still starting); the heartbeat
    only where no bot that takes the lock has run yet."""
    by_lock = instance_lock.running(data_dir)
    if by_lock is True:
        return instance_lock.holder(data_dir) or 0
    if by_lock is False:
        return None
    return int((beat or {}).get("pid", 0) or 0) if is_live(beat, now, config) else None


@dataclass(frozen=True, slots=True)
class Liveness:
    """Whether and how the bot runs: this process's live values when it is the running
    bot (`here`), else what the last heartbeat said (the command line's offline App)."""

    here: bool
    running: bool
    started_at: float | None
    last_seen: float | None
    transport: str
    connected: bool
    queue: int | None  # actions waiting in the outbox; None when unknown
    stopped_cleanly: bool | None  # the last run's end, seen from the command line


def liveness(app: App) -> Liveness:
    now = app.clock.now()
    beat = read_heartbeat(app.store) or {}
    if app.transport.name != "offline":
        return Liveness(
            here=True,
            running=True,
            started_at=(app.started_at or now).timestamp(),
            last_seen=now.timestamp(),
            transport=app.transport.name,
            connected=bool(app.transport.connected),
            queue=app.outbox.pending_count(),
            stopped_cleanly=None,
        )
    config = health_config(app.settings)
    return Liveness(
        here=False,
        running=bot_pid(app.settings.bot.data_dir, beat, now, config) is not None,
        started_at=float(beat["started_at"]) if "started_at" in beat else None,
        last_seen=float(beat["beat_at"]) if "beat_at" in beat else None,
        transport=str(beat.get("transport", "")),
        connected=bool(beat.get("connected")),
        queue=int(beat["pending"]) if "pending" in beat else None,
        stopped_cleanly=bool(beat.get("stopped")) if beat else None,
    )


def at(app: App, ts: float) -> str:
    return datetime.fromtimestamp(ts, app.settings.bot.timezone).strftime("%m-%d %H:%M")


def data_of(event: dict[str, object]) -> dict[str, Any]:
    data = event.get("data")
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)
