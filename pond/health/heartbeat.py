"""The running bot's heartbeat: liveness for the command line and watchdogs, one bot per
data dir, the unclean-stop alert, and the periodic health checks (errors, disk, queue)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pond.health.common import (
    HEARTBEAT_FILE,
    HEARTBEAT_KEY,
    NAMESPACE,
    HealthConfig,
    at,
    data_of,
    health_config,
    is_live,
    read_heartbeat,
    write_json,
)
from pond.health.mailbox import REQ, RES, answer_request
from pond.store import lock as instance_lock

if TYPE_CHECKING:
    from pond.app import App

log = logging.getLogger("pond.health")


class Heartbeat:
    """Liveness for the running bot; start() before app.start(), run() as a task, close()
    at shutdown. Also serves the command-line mailbox and raises the health alerts."""

    def __init__(self, app: App, config: HealthConfig | None = None) -> None:
        self.app = app
        self.config = config or health_config(app.settings)
        self.kv = app.store.namespace(NAMESPACE)
        self.run_id = secrets.token_hex(4)
        self.previous: dict[str, Any] | None = None
        self._errors_since = app.clock.now()
        self._last_error_alert = 0.0
        self._alerted: dict[str, str] = {}  # alert name -> the period it was sent for

    def check_single(self) -> None:
        """Refuse to run a second bot on the same data (two writers would corrupt the
        at-most-once journal and double every cap)."""
        from pond.app import StartupError  # the App imports nothing of ours: no cycle

        self.previous = read_heartbeat(self.app.store)
        beat = self.previous
        if instance_lock.running(self.app.settings.bot.data_dir) is not None:
            return  # the data dir's lock decides (bot.py holds it before this check)
        if (
            beat
            and beat.get("pid") != os.getpid()
            and is_live(beat, self.app.clock.now(), self.config)
        ):
            raise StartupError(
                f"另一个 pond 进程（pid {beat.get('pid')}）正在使用数据目录 "
                f"{self.app.settings.bot.data_dir}，请先停止它"
            )

    async def start(self) -> None:
        """After app.start(): tell the admins if the last run did not stop cleanly."""
        if self.previous is None:
            self.previous = read_heartbeat(self.app.store)
        beat = self.previous
        if beat and not beat.get("stopped") and beat.get("run_id") != self.run_id:
            last = float(beat.get("beat_at", 0.0))
            down = max(0.0, self.app.clock.now().timestamp() - last)
            log.warning("the last run did not stop cleanly (last heartbeat %.0f s ago)", down)
            self.app.record("health.unclean_stop", last_beat=last, down_s=round(down))
            self.app.alert(
                "admin/restart_alert", last_seen=at(self.app, last), down_min=round(down / 60)
            )
        self.beat()

    def beat(self, *, stopped: bool = False) -> dict[str, Any]:
        app = self.app
        started = app.started_at or app.clock.now()
        beat = {
            "run_id": self.run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": started.timestamp(),
            "beat_at": app.clock.now().timestamp(),
            "transport": app.transport.name,
            "connected": bool(app.transport.connected),
            "pending": app.outbox.pending_count(),
            "stopped": stopped,
        }
        self.kv.set(HEARTBEAT_KEY, beat)
        write_json(app.settings.bot.data_dir / HEARTBEAT_FILE, beat)
        return beat

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.beat(stopped=True)

    async def tick(self) -> None:
        """One heartbeat plus the periodic health checks."""
        self.beat()
        self._check_errors()
        self._check_disk()
        self._check_queue()
        now = self.app.clock.now().timestamp()
        for key, value in self.kv.items(RES):  # answers nobody came back for
            if isinstance(value, dict) and now - float(value.get("at", 0.0)) > 600:
                self.kv.delete(key)

    def _check_errors(self) -> None:
        now = self.app.clock.now()
        if now.timestamp() - self._last_error_alert < self.config.error_alert_min * 60:
            return
        errors = [
            e
            for e in self.app.store.sql.events(kind="handler.error", since=self._errors_since)
            if data_of(e).get("event") != "job"  # failed jobs have their own alert
        ]
        self._errors_since = now
        if not errors:
            return
        where: dict[str, int] = {}
        for e in errors:
            name = str(data_of(e).get("where", "?"))
            where[name] = where.get(name, 0) + 1
        top = sorted(where.items(), key=lambda kv: -kv[1])[:3]
        self._last_error_alert = now.timestamp()
        self.app.alert(
            "admin/error_alert",
            count=len(errors),
            places=[{"where": w, "n": n} for w, n in top],
        )

    def _check_disk(self) -> None:
        try:
            free_mb = shutil.disk_usage(self.app.settings.bot.data_dir).free // 1_000_000
        except OSError:
            return
        if free_mb < self.config.disk_min_mb:
            self._once_per("disk", self.app.clock.now().date().isoformat(), free_mb=free_mb)

    def _check_queue(self) -> None:
        waiting = self.app.outbox.pending_count()
        if self.config.queue_alert and waiting >= self.config.queue_alert:
            self._once_per("queue", self.app.clock.now().strftime("%Y-%m-%d %H"), waiting=waiting)

    def _once_per(self, name: str, period: str, **variables: Any) -> None:
        if self._alerted.get(name) == period:
            return
        self._alerted[name] = period
        self.app.alert(f"admin/{name}_alert", **variables)

    async def serve_mailbox(self) -> int:
        """Run the command line's requests (see `ask`); returns how many were served."""
        served = 0
        for key, request in self.kv.items(REQ):
            self.kv.delete(key)  # claimed: a request runs once even if this loop is slow
            if not isinstance(request, dict):
                continue
            answer = await answer_request(self.app, request)
            answer["at"] = self.app.clock.now().timestamp()
            self.kv.set(RES + key.removeprefix(REQ), answer)
            served += 1
        return served

    async def run(self) -> None:
        elapsed = 0.0
        while True:
            await asyncio.sleep(self.config.mailbox_poll_s)
            elapsed += self.config.mailbox_poll_s
            try:
                await self.serve_mailbox()
                if elapsed >= self.config.heartbeat_s:
                    elapsed = 0.0
                    await self.tick()
            except Exception as error:  # the heartbeat must outlive a full disk or a locked db
                log.error("heartbeat failed: %s: %s", type(error).__name__, error)


@contextlib.asynccontextmanager
async def heartbeat(app: App, beat: Heartbeat | None = None) -> AsyncIterator[Heartbeat]:
    """`async with heartbeat(app): ...` around a running App (bot.py): beats while inside,
    marks a clean stop on the way out. Pass the Heartbeat whose check_single() ran before
    app.start()."""
    beat = beat or Heartbeat(app)
    await beat.start()
    task = asyncio.create_task(beat.run())
    try:
        yield beat
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        beat.close()
