"""scripts/broadcast.py: the terminal side of 群发, on the same data dir as a bot.

It never sends: start/resume are requests the bot applies at its next check, pause/cancel
hold the journal at once. The last test kills a real bot process (SIGKILL, as
scripts/fault_inject.py does) in the middle of a campaign started from the tool, restarts
it, and checks the delivery log against the journal and the report: no duplicates,
unknowns reported."""

from __future__ import annotations

import asyncio
import io
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, ChatSim, load_script
from test_broadcasts import customers, make, people, record_of, start, write_campaign

from plugins._broadcasts import report, state
from pond import RowStatus

cli: Any = load_script("broadcast", "broadcast_cli")


async def tool(sim: ChatSim, *words: str, ask: str = "") -> tuple[int, str]:
    """Run the tool on the sim's data dir and clock; (exit code, what it printed)."""
    out = io.StringIO()
    argv = [*words, "--data-dir", str(sim.data_dir), "--env-file", str(sim.data_dir / "none")]
    code = await cli.run(argv, clock=sim.clock, out=out, ask=lambda prompt: ask)
    return code, out.getvalue()


async def test_start_from_the_tool_waits_for_the_bot_and_the_tool_sends_nothing(
    tmp_path: Path,
) -> None:
    sim = await make(tmp_path)
    people(sim, 3)
    path = write_campaign(tmp_path / "files")
    assert (await tool(sim, "create", str(path)))[0] == 0
    assert (await tool(sim, "dry-run", "tea"))[0] == 0
    assert (await tool(sim, "start", "tea"))[0] == 1  # shown, not confirmed
    assert (await tool(sim, "start", "tea", ask="3"))[0] == 0  # typed at the prompt
    assert sim.transport.performed == []
    assert sim.app.ledger.job_status("broadcasts.tea") is None  # only a request so far
    assert record_of(sim)["status"] == state.DRAFT
    said = await sim.advance(1800)  # the bot's check applies it
    assert sorted(customers(said)) == ["c0000", "c0001", "c0002"]
    assert "broadcasts/alert" in said.keys  # the admins hear who started what
    assert record_of(sim)["confirmed"]["by"] == "cli:cli"
    await sim.close()


async def test_a_wrong_count_or_a_bad_file_is_refused_with_exit_code_1(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    people(sim, 3)
    path = write_campaign(tmp_path / "files")
    bad = write_campaign(tmp_path / "files", "bad", audience='segment = "vip or"')
    assert (await tool(sim, "create", str(bad)))[0] == 1
    assert (await tool(sim, "create", str(path)))[0] == 0
    assert (await tool(sim, "start", "tea", "--confirm", "30"))[0] == 1
    assert (await tool(sim, "pause", "tea"))[0] == 1  # not running
    assert (await tool(sim, "report", "nope"))[0] == 1
    assert (await tool(sim, "pause"))[0] == 1  # no name
    assert state.Campaigns(sim.app.store.namespace("broadcasts")).requests() == []
    await sim.close()


async def test_pause_and_cancel_hold_the_journal_at_once_and_the_bot_follows(
    tmp_path: Path,
) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_BROADCAST="2")
    people(sim, 5)
    write_campaign(sim)
    await start(sim)  # 2 sent, 3 wait for tomorrow
    assert (await tool(sim, "pause", "tea"))[0] == 0
    assert sim.app.ledger.summary("broadcasts.tea") == {"sent": 2, "held": 3}
    assert customers(await sim.advance(24 * 3600)) == []
    assert record_of(sim)["status"] == state.PAUSED  # the bot applied the request
    assert (await tool(sim, "resume", "tea"))[0] == 0
    assert customers(await sim.advance(1800)) == ["c0002", "c0003"]
    assert (await tool(sim, "cancel", "tea"))[0] == 0
    assert sim.app.ledger.summary("broadcasts.tea") == {"sent": 4, "skipped": 1}
    assert customers(await sim.advance(3 * 24 * 3600)) == []
    assert record_of(sim)["status"] == state.CANCELLED
    code, printed = await tool(sim, "report", "tea")
    assert code == 0 and "4" in printed
    await sim.close()


async def test_status_draws_the_bar_and_says_when_no_bot_is_running(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_BROADCAST="2")
    people(sim, 4)
    write_campaign(sim)
    await start(sim)
    code, printed = await tool(sim, "status", "tea")
    assert code == 0 and "█" in printed and "50%" in printed
    kv = state.Campaigns(sim.app.store.namespace("broadcasts"))
    kv.beat({"wall": time.time() - 3600, "transport": "memory"})  # the bot went away
    code, printed = await tool(sim, "status")
    assert code == 0 and "没有检测到运行中的机器人" in printed
    await sim.close()


async def test_right_after_the_bot_stops_the_tool_says_no_bot_is_running(
    tmp_path: Path,
) -> None:
    sim = await make(tmp_path)
    people(sim, 3)
    for name in ("tea", "tea2"):
        assert (await tool(sim, "create", str(write_campaign(tmp_path / "files", name))))[0] == 0
    await sim.advance(120)  # the bot's minute check beats
    code, printed = await tool(sim, "start", "tea", "--confirm", "3")
    assert code == 0 and "运行中的机器人（" in printed
    await sim.close()  # the bot stops (a deploy, Ctrl-C)
    code, printed = await tool(sim, "start", "tea2", "--confirm", "3")
    assert code == 0
    assert "没有检测到运行中的机器人" in printed and "秒前有心跳" not in printed


def test_the_tool_uses_the_data_dir_the_bot_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("WECHATY_PUPPET_SERVICE_TOKEN", "BOT_TRANSPORT", "BOT_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    none = ["--env-file", str(tmp_path / "none")]
    console = cli.settings_for(cli.parse_args(["status", *none]))
    assert console.bot.data_dir == ROOT / "data" / "console"  # no token: the simulator's
    chosen = cli.settings_for(cli.parse_args(["status", "--data-dir", str(tmp_path), *none]))
    assert chosen.bot.data_dir == tmp_path
    monkeypatch.setenv("BOT_TRANSPORT", "wechaty")
    assert cli.settings_for(cli.parse_args(["status", *none])).bot.data_dir == ROOT / "data"


# -- kill -9 mid-campaign ------------------------------------------------------------------------
RECIPIENTS = 40


def child_main(data_dir: str, log: str, seed: int) -> None:
    """One life of the bot: the real App on the real clock, the broadcasts plugin, a
    transport logging each delivery with one unbuffered write (scripts/fault_inject.py)."""
    fault = load_script("fault_inject", "fault_inject")
    import plugins
    from pond import App, Settings, SystemClock

    env = fault.child_env(Path(data_dir), cap_send=10_000, cap_broadcast=10_000)
    settings = Settings.from_mapping({**env, "BOT_PLUGINS": "broadcasts"})
    clock = SystemClock(settings.bot.timezone)
    rng = random.Random(seed)

    async def life() -> None:
        app = App(settings, fault.LoggedTransport(clock, Path(log), rng), clock=clock, rng=rng)
        for plugin in plugins.load(settings.bot.plugins):
            app.include(plugin)
        await app.start()  # recover(); the broadcasts start-up check applies the request
        print("ready", flush=True)
        await app.outbox.drain()
        await app.run_job("broadcasts.tick")  # notices the campaign is done
        print("done", json.dumps(app.ledger.summary("broadcasts.tea")), flush=True)
        await app.stop()

    asyncio.run(life())


def _run_child(data_dir: Path, log: Path, seed: int, kill_after: float | None) -> bool:
    """Start a bot; SIGKILL it `kill_after` s after its first delivery. True if killed."""
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]; "
        "import test_broadcast_cli as t; "
        f"t.child_main({str(data_dir)!r}, {str(log)!r}, {seed})"
    )
    env = {"POND_NO_VENV": "1", "PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        if kill_after is not None:
            size = log.stat().st_size if log.exists() else 0
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                if log.exists() and log.stat().st_size > size:
                    break
                time.sleep(0.0005)
            time.sleep(kill_after)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"bot exited with {proc.returncode}")
    return proc.returncode == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_mid_campaign_no_duplicates_and_unknowns_reported(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "deliveries.log"
    argv = ["--data-dir", str(data_dir), "--env-file", str(tmp_path / "none")]
    settings = cli.settings_for(cli.parse_args(["status", *argv]))

    async def prepare() -> None:
        app = cli.build_app(settings)
        now = app.clock.now()
        for i in range(RECIPIENTS):
            app.book.upsert(f"c{i:04d}", now, name=f"c{i}")
            app.book.tag(f"c{i:04d}", ["vip"], now)
        await app.stop()
        path = write_campaign(tmp_path / "files")
        out = io.StringIO()
        assert await cli.run(["create", str(path), *argv], out=out) == 0
        confirm = ["start", "tea", "--confirm", str(RECIPIENTS)]
        assert await cli.run([*confirm, *argv], out=out) == 0

    asyncio.run(prepare())
    rng = random.Random(20261123)
    kills = 0
    for attempt in range(3):
        killed = _run_child(data_dir, log, seed=attempt, kill_after=rng.uniform(0.0, 0.02))
        kills += killed
        if not killed:
            break
    _run_child(data_dir, log, seed=99, kill_after=None)

    lines = [line.split("\t") for line in log.read_text("utf-8").splitlines()]
    delivered = Counter(parts[2] for parts in lines if len(parts) == 4)
    assert kills >= 1, "no kill landed mid-campaign: the run proves little"
    assert max(delivered.values()) == 1, "a customer got the campaign twice"

    async def check() -> None:
        app = cli.build_app(settings)
        rows = app.ledger.rows_of("broadcasts.tea")
        by = Counter(r.status for r in rows)
        assert len(rows) == RECIPIENTS
        assert by[RowStatus.SENT] + by[RowStatus.UNKNOWN] == RECIPIENTS
        assert by[RowStatus.UNKNOWN] <= kills
        sent = {r.recipient for r in rows if r.status is RowStatus.SENT}
        assert sent <= set(delivered)  # "sent" means delivered
        record = state.Campaigns(app.store.namespace("broadcasts")).get("tea")
        assert record is not None and record["status"] == state.DONE
        data = report.report(app.context("broadcasts"), record)
        assert (data["sent"], data["unknown"]) == (by[RowStatus.SENT], by[RowStatus.UNKNOWN])
        unknown = sorted(r.recipient for r in rows if r.status is RowStatus.UNKNOWN)
        assert data["unknown_ids"] == unknown
        await app.stop()
        out = io.StringIO()
        assert await cli.run(["report", "tea", *argv], out=out) == 0
        assert all(cid in out.getvalue() for cid in unknown)

    asyncio.run(check())
