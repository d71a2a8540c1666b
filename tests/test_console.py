"""The console simulator as an operator uses it: scripts of what people do, read back as a
transcript; the simulated clock fires every job due on the way, like the real scheduler."""

from __future__ import annotations

import asyncio
import io
import os
import random
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.executors import base as executor_base
from apscheduler.schedulers import base as scheduler_base

import plugins
from pond import App, FakeClock, Settings
from pond.simulation import SimDriver
from pond.transports.console import ConsoleTransport, Simulator

ROOT = Path(__file__).resolve().parent.parent
DAYS = ROOT / "tests" / "data" / "operator_days.txt"
# Not on a minute: a real bot never starts on the exact second a job falls due.
MONDAY_MORNING = datetime(2026, 11, 23, 7, 30, 30)


def settings_for(data_dir: Path, env_file: Path | None = None) -> Settings:
    env = {"BOT_DATA_DIR": str(data_dir), "BOT_PERSONA_DIR": str(ROOT / "persona")}
    if env_file is not None:
        for line in env_file.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip()
    return Settings.from_mapping(env)


async def console(
    data_dir: Path, env_file: Path | None = None, start: datetime = MONDAY_MORNING
) -> tuple[Simulator, io.StringIO]:
    settings = settings_for(data_dir, env_file)
    clock = FakeClock(start)
    out = io.StringIO()
    transport = ConsoleTransport(clock.now, out)
    app = App(settings, transport, clock=clock, rng=random.Random(7))
    for plugin in plugins.load(settings.bot.plugins):
        app.include(plugin)
    await app.start()
    return Simulator(app, clock), out


def fired(app: App) -> list[tuple[str, str]]:
    return sorted(
        (str(e["data"]["job"]), str(e["data"]["fire_time"]))
        for e in app.store.sql.events(kind="job.fired")
    )


# -- the whole-days script -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[tuple[str, str]]]:
    """operator_days.txt played once on the simulated clock: (transcript, jobs fired)."""

    async def play() -> tuple[str, list[tuple[str, str]]]:
        sim, out = await console(tmp_path_factory.mktemp("days"), DAYS.with_suffix(".env"))
        try:
            await sim.play_file(str(DAYS))
        finally:
            await sim.app.stop()
        return out.getvalue(), fired(sim.app)

    return asyncio.run(play())


def test_days_script_shows_welcome_followups_calendar_post_and_handoff_timeout(
    simulated_days: tuple[str, list[tuple[str, str]]],
) -> None:
    text = simulated_days[0]
    # Each moment is on the day printed above it.
    assert "—— 2026-11-23 周一 ——" in text and "—— 2026-11-27 周五 ——" in text
    monday, _, rest = text.partition("—— 2026-11-24 周二 ——")
    assert "→ r1 @carol  [groups/welcome]" in monday  # groups.tick (every minute)
    assert "→ dave  [friends/welcome]" in monday
    assert "→ dave  [friends/fu_welcome]" in monday  # friends.tick: 30 minutes after adding
    assert "09:30:00  发朋友圈  [calendar/weekly_product]" in monday  # calendar.tick
    assert "→ boss  [auto_reply/handoff_staff]" in monday
    assert "→ boss  [auto_reply/handoff_expired]" in monday  # auto_reply.sweep
    assert monday.index("[auto_reply/handoff_expired]") < monday.index("erin: 还在吗")
    assert "09:00:06  → boss  [admin/report]" in monday
    friday = text.partition("—— 2026-11-27 周五 ——")[2]
    assert "10:00:06  → dave  [friends/fu_value]" in friday  # day 4 of the follow-up plan
    assert "[calendar/weekly_life]" in rest  # Wednesday's post
    assert not [line for line in text.splitlines() if line.startswith("！")]  # all understood
    # /jobs at the end lists the next run of each job, with its day.
    assert "groups.tick               11-27 周五 10:06" in text
    assert "admin.morning_report      11-28 周六 09:00" in text


class RealScheduler:
    """Fires the App's jobs with APScheduler's own AsyncIOScheduler (as in production), on the
    fake clock: the scheduler decides what is due and when it next wakes up; this only moves
    the clock to that moment and lets the outbox work in between."""

    def __init__(self, app: App, clock: FakeClock) -> None:
        self.app = app
        self.clock = clock
        self.sim = SimDriver(app, clock)  # settles handlers and the outbox between fires
        app.start_background(outbox=False, scheduler=True)
        assert app._scheduler is not None
        self.scheduler = app._scheduler

    def _next_job_at(self) -> datetime | None:
        times = [job.next_run_time for job in self.scheduler.get_jobs() if job.next_run_time]
        return min(times) if times else None

    async def _run_due(self) -> None:
        self.scheduler._process_jobs()  # what its timer calls at a wake-up
        executor: Any = self.scheduler._lookup_executor("default")
        while executor._pending_futures:
            await self.sim.settle()
            running = list(executor._pending_futures)
            if running:
                await asyncio.wait(running, timeout=0.01)
        await self.sim.settle()

    async def settle(self, *, jump: bool = False) -> None:
        await self.sim.settle(jump=jump)

    async def advance(self, seconds: float) -> None:
        await self.sim.settle()
        end = self.clock.now() + timedelta(seconds=seconds)
        while True:
            job_at = self._next_job_at()
            out_ts = self.app.outbox.next_due()
            out_at = datetime.fromtimestamp(out_ts, self.clock.tz) if out_ts else None
            candidates = [t for t in (job_at, out_at) if t is not None and t <= end]
            if not candidates:
                break
            moment = min(candidates)
            self.clock.set(max(self.clock.now(), moment))
            if job_at is not None and job_at <= moment:
                await self._run_due()
            else:
                await self.sim.settle()
                if self.app.outbox.next_due() == out_ts:
                    break
        self.clock.set(max(self.clock.now(), end))
        await self.sim.settle()

    def upcoming(self) -> list[tuple[str, datetime | None]]:
        return sorted((job.id, job.next_run_time) for job in self.scheduler.get_jobs())


async def test_simulated_days_fire_the_same_jobs_as_the_real_scheduler(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    simulated_days: tuple[str, list[tuple[str, str]]],
) -> None:
    sim_out, sim_fired = simulated_days
    real, real_out = await console(tmp_path / "real", DAYS.with_suffix(".env"))
    clock = real.clock

    class FakeNow(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return clock.now().astimezone(tz)

    # APScheduler reads the wall clock in these two modules only.
    monkeypatch.setattr(scheduler_base, "datetime", FakeNow)
    monkeypatch.setattr(executor_base, "datetime", FakeNow)
    real.driver = RealScheduler(real.app, clock)  # type: ignore[assignment]
    lines = DAYS.read_text(encoding="utf-8").splitlines()
    first_day = lines[: lines.index("# ==== 第一天结束 ====")]
    try:
        await real.play(list(first_day))
    finally:
        await real.app.stop()
    day_end = clock.now()
    assert day_end == datetime(2026, 11, 24, 7, 0, tzinfo=clock.tz)

    real_fired = fired(real.app)
    assert [f for f in sim_fired if f[1] <= day_end.isoformat()] == real_fired
    assert len(real_fired) > 1440  # every minute's jobs and the others, for a whole day
    assert {job for job, _ in real_fired} == set(real.app.jobs)

    def sends(out: str) -> Counter[str]:
        """What went to whom on the first day (times may differ within a minute: real jobs
        due together run concurrently)."""
        day = out.partition("（时间前进到 11-24 周二 07:00）")[0]
        return Counter(
            "  ".join(line.split("  ")[1:3])
            for line in day.splitlines()
            if line[:2].isdigit() and ("  → " in line or "  发朋友圈  " in line)
        )

    assert sends(sim_out) == sends(real_out.getvalue())
    assert {"→ r1 @carol  [groups/welcome]", "→ dave  [friends/fu_welcome]"} <= set(sends(sim_out))


# -- line errors -------------------------------------------------------------------------------
async def test_bad_lines_get_a_chinese_error_naming_the_line_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    sim, out = await console(tmp_path / "d")
    script = (
        "\n".join(
            [
                "/",
                "/advance nan",
                "/advance 1e308",
                "/advance inf",
                "/advance -2h",
                "/advance",
                "/until 25:00",
                "/tick nosuch",
                "/frobnicate",
                "alice 你好",
                "alice: 你好",
            ]
        ).encode()
        + b"\n\xff\xfe\xe4\xbd: broken\nbob: \xe4\xbd\xa0\xe5\xa5\xbd\n"
    )
    try:
        await sim.play_bytes(script)
    finally:
        await sim.app.stop()
    lines = out.getvalue().splitlines()
    errors = [line for line in lines if line.startswith("！")]
    assert [e.split("：", 1)[0] for e in errors] == [f"！第 {n} 行" for n in range(1, 11)] + [
        "！第 12 行不是 UTF-8 编码的文字，已跳过（请用 UTF-8 保存脚本）"
    ]
    assert "斜杠后面要写命令" in errors[0]
    assert "一次最多前进 31 天" in errors[2]
    assert "时间只能往前走" in errors[4]
    assert "没有定时任务「nosuch」" in errors[7]
    assert "没有 /frobnicate 这个命令" in errors[8]
    english = re.compile(r"\b(bad|unknown|usage|error|duration|empty|finite)\b", re.I)
    assert not english.search("\n".join(errors))
    assert any("→ alice  [greeter/hello]" in line for line in lines)  # the session went on
    assert any("→ bob  [greeter/hello]" in line for line in lines)


def run_bot(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "POND_NO_VENV": "1"}
    env.pop("WECHATY_PUPPET_SERVICE_TOKEN", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )


def test_a_script_file_with_bytes_that_are_not_utf8_plays_its_other_lines(
    tmp_path: Path,
) -> None:
    script = tmp_path / "s.txt"
    script.write_bytes("alice: 你好\n".encode() + b"bob: \xb2\xe2\xca\xd4\n/advance 1e308\n/\n")
    result = run_bot("--console", "--script", str(script))
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, err
    assert "Traceback" not in err
    assert "→ alice  [greeter/hello]" in out
    assert "！第 2 行不是 UTF-8 编码的文字" in out
    assert "！第 3 行：/advance 一次最多前进 31 天" in out
    assert "！第 4 行：斜杠后面要写命令" in out


def test_a_missing_script_file_is_a_chinese_error() -> None:
    result = run_bot("--console", "--script", "no/such/script.txt")
    assert result.returncode == 2
    assert "读不了脚本文件 no/such/script.txt" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_ctrl_c_in_the_interactive_console_exits_at_once_without_a_traceback(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "POND_NO_VENV": "1", "BOT_DATA_DIR": str(tmp_path)}
    env.pop("WECHATY_PUPPET_SERVICE_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bot.py"), "--console"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("alice: 你好\n".encode())
    proc.stdin.flush()
    seen = b""
    while b"[greeter/hello]" not in seen:  # the console is up and answering
        chunk = proc.stdout.read1(4096)
        assert chunk, proc.stderr.read() if proc.stderr else b""
        seen += chunk
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()  # a full stderr pipe must not stall the child
    proc.send_signal(signal.SIGINT)  # no Enter after it: stdin stays open
    try:
        proc.wait(timeout=60)  # (communicate() would close stdin: an end of input, not Ctrl-C)
    finally:
        proc.kill()
        reader.join()
    err = errors[0]
    assert proc.returncode == 130
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    assert "（已退出）" in err.decode()
    # The stop was clean: the heartbeat says so.
    beat = (tmp_path / "console" / "heartbeat.json").read_text()
    assert '"stopped": true' in beat


# -- alerts -------------------------------------------------------------------------------------
async def test_alerts_read_as_text_in_the_console_not_as_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim, out = await console(tmp_path / "d")
    try:
        # No admin yet: the console shows what an admin would be told.
        sim.app.transport.status_listener("reconnected", {"downtime_s": 120.0})
        await sim.feed("/admin boss")
        sim.app.transport.status_listener("reconnected", {"downtime_s": 60.0})
        await sim.feed("/advance 1m")
    finally:
        await sim.app.stop()
    lines = out.getvalue().splitlines()
    shown = [line for line in lines if "⚑ 给管理员的提醒" in line]
    assert len(shown) == 1 and "约 2 分钟" in shown[0] and "{" not in shown[0]
    assert any("→ boss  [core/reconnect_alert]" in line for line in lines)  # once, as a message
    assert sum("reconnect_alert" in line or "⚑" in line for line in lines) == 2
    assert not [r for r in caplog.records if r.getMessage().startswith("alert ")]


async def test_console_help_is_chinese(tmp_path: Path) -> None:
    sim, out = await console(tmp_path / "d")
    try:
        await sim.feed("/help")
    finally:
        await sim.app.stop()
    text = out.getvalue()
    assert "控制台模拟器" in text and "/advance 2h" in text and "/until 09:00" in text
    for word in ("says", "ignored", "move the", "run a scheduled"):
        assert word not in text
