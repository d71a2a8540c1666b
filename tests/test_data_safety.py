"""Damaged data files, backups and restore, one bot per data dir.

What the operator sees when the database was emptied, lost or damaged (a refusal naming
the file and the way back, never an empty start), the automatic backups and the restore
command, and the lock that keeps a second bot (or a restore) off a running bot's data."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, ChatSim, load_script

from pond import Action, ActionClass, ActionKind, health
from pond.store import InstanceLock, InstanceLocked, Store, StoreCorrupt, StoreError, integrity
from pond.store import backup as backups
from pond.store import lock as instance_lock

backup_cli: Any = load_script("backup", "backup_cli")
admin_cli: Any = load_script("admin", "admin_cli_for_lock")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


async def served(data: Path) -> ChatSim:
    """A bot that has answered, recorded an opt-out and journaled a bulk job."""
    sim = await ChatSim.create(data, plugins=["greeter"])
    await sim.say("alice", "你好")
    sim.app.outbox.opt_out("bob", "test")
    bulk = [
        Action(
            ActionKind.SEND,
            to=f"c{i}",
            cls=ActionClass.MARKETING,
            text="新品",
            key="greeter/hello",
            job="promo",
            contact_id=f"c{i}",
        )
        for i in range(3)
    ]
    sim.app.outbox.enqueue_bulk("promo", bulk)
    return sim


async def stopped_with_data(data: Path) -> Path:
    sim = await served(data)
    await sim.close()
    return data / "pond.sqlite3"


def checkpoint(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def damage(db: Path, table: str) -> bytes:
    """Overwrite the root page of `table` with garbage (a bad sector, a torn write)."""
    checkpoint(db)
    conn = sqlite3.connect(db)
    page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    garbage = (b"\xde\xad\xbe\xef garbage " * size)[:size]
    with db.open("r+b") as fh:
        fh.seek((page - 1) * size)
        fh.write(garbage)
    return db.read_bytes()


def refusal(data: Path) -> str:
    with pytest.raises(StoreCorrupt) as info:
        Store(data)
    return str(info.value)


# -- measured: an emptied or lost database started silently as a new one -----------------------
async def test_a_zero_byte_database_that_held_data_is_refused(tmp_path: Path) -> None:
    db = await stopped_with_data(tmp_path / "d")
    db.write_bytes(b"")
    message = refusal(tmp_path / "d")
    assert f"数据库文件 {db} 变成了空文件（0 字节）" in message
    assert "out_optout" in message  # what it held
    assert "scripts/backup.py restore" in message and "pond.state.json" in message
    assert db.read_bytes() == b""  # untouched: not turned into an empty database


async def test_a_lost_database_is_refused(tmp_path: Path) -> None:
    db = await stopped_with_data(tmp_path / "d")
    db.unlink()
    assert "不见了" in refusal(tmp_path / "d")
    assert not db.exists()


async def test_a_database_swapped_for_an_empty_one_is_refused(tmp_path: Path) -> None:
    db = await stopped_with_data(tmp_path / "d")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    sqlite3.connect(db).execute("CREATE TABLE kv (namespace TEXT)").connection.close()
    assert "里面的数据不见了" in refusal(tmp_path / "d")


async def test_starting_afresh_on_purpose_is_moving_the_marker_too(tmp_path: Path) -> None:
    db = await stopped_with_data(tmp_path / "d")
    db.write_bytes(b"")
    marker = tmp_path / "d" / integrity.STATE_FILE
    assert f"请把 {db} 和 {marker} 一起移走后再启动" in refusal(tmp_path / "d")
    db.unlink()
    marker.unlink()
    Store(tmp_path / "d").close()  # as the message says: a new, empty database


async def test_a_zero_byte_database_in_a_dir_from_before_the_marker_is_refused(
    tmp_path: Path,
) -> None:
    db = await stopped_with_data(tmp_path / "d")
    (tmp_path / "d" / integrity.STATE_FILE).unlink()  # a data dir older than this check
    (tmp_path / "d" / "heartbeat.json").write_text("{}")  # ...where a bot has run
    db.write_bytes(b"")
    message = refusal(tmp_path / "d")
    assert "这个目录以前运行过机器人" in message and f"请把 {db} 一起移走后再启动" in message


async def test_a_new_data_dir_starts_and_remembers_its_data(tmp_path: Path) -> None:
    await stopped_with_data(tmp_path / "d")
    state = integrity.read_state(tmp_path / "d")
    assert {"out_optout", "out_counters", "out_rows"} <= set(state["tables"])


# -- measured: damaged pages were found only by the customer -----------------------------------
@pytest.mark.parametrize("table", ["out_optout", "out_counters", "out_rows"])
async def test_a_damaged_page_stops_start_up_naming_the_file(tmp_path: Path, table: str) -> None:
    db = await stopped_with_data(tmp_path / "d")
    content = damage(db, table)
    message = refusal(tmp_path / "d")
    assert f"数据库文件 {db} 已损坏（完整性检查 quick_check 发现：" in message
    assert "scripts/backup.py restore" in message
    assert db.read_bytes() == content


async def test_tools_beside_a_running_bot_do_not_reread_the_whole_file(tmp_path: Path) -> None:
    db = await stopped_with_data(tmp_path / "d")
    damage(db, "out_optout")
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_AND_WAIT, str(tmp_path / "d")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        Store(tmp_path / "d").close()  # the running bot checked it when it started
    finally:
        holder.communicate("", timeout=30)
    assert "已损坏" in refusal(tmp_path / "d")  # the next start checks again


LOCK_AND_WAIT = (
    "import sys; sys.path.insert(0, '.'); from pathlib import Path; "
    "from pond.store import InstanceLock; lock = InstanceLock(Path(sys.argv[1])); "
    "lock.acquire(); print('locked', flush=True); sys.stdin.read()"
)


@pytest.fixture
def process_state() -> Iterator[None]:
    import logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    mask = os.umask(0o077)
    os.umask(mask)
    yield
    os.umask(mask)
    root.handlers[:], root.level = saved


def bot_check(data: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    import bot

    code = bot.main(["--check", "--data-dir", str(data), "--env-file", str(data / "none")])
    return code, capsys.readouterr().err


async def test_a_damaged_outbox_page_is_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], process_state: None
) -> None:
    db = await stopped_with_data(tmp_path / "d")
    damage(db, "out_rows")
    code, err = await asyncio.to_thread(bot_check, tmp_path / "d", capsys)
    assert code == 2 and "数据文件错误：数据库文件" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b'{"_default": {"1": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}", "JSON 嵌套层数太深"),
        (b'{"_default": {"1": {"name": "\xff\xfe"}}}', "不是 UTF-8 编码"),
        (b'{"_default": {"1": {"name": ', "JSON 格式错误"),
    ],
)
async def test_damaged_document_files_are_the_friendly_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    process_state: None,
    content: bytes,
    detail: str,
) -> None:
    await stopped_with_data(tmp_path / "d")
    doc = tmp_path / "d" / "docs" / "greeter.json"
    doc.parent.mkdir(exist_ok=True)
    doc.write_bytes(content)
    code, err = await asyncio.to_thread(bot_check, tmp_path / "d", capsys)
    assert code == 2 and f"数据文件错误：数据文件 {doc} 已损坏（" in err, err
    assert detail in err and "Traceback" not in err


# -- backups -----------------------------------------------------------------------------------
async def test_an_online_backup_holds_what_the_running_bot_wrote(tmp_path: Path) -> None:
    sim = await served(tmp_path / "d")
    try:
        path = backups.make_backup(
            sim.data_dir, sim.data_dir / "pond.sqlite3", tmp_path / "b", NOW, keep=7
        )
        await sim.say("carol", "你好")  # the bot keeps writing meanwhile
    finally:
        await sim.close()
    assert path.name == "pond-20261123-100000"
    copy = sqlite3.connect(path / "pond.sqlite3")
    assert copy.execute("SELECT contact_id FROM out_optout").fetchall() == [("bob",)]
    copy.close()
    assert integrity.quick_check(path / "pond.sqlite3") == []
    assert not list((tmp_path / "b").glob(".tmp-*"))


async def test_backups_are_kept_newest_first_up_to_keep(tmp_path: Path) -> None:
    db = await stopped_with_data(tmp_path / "d")
    for hour in range(4):
        backups.make_backup(tmp_path / "d", db, tmp_path / "b", NOW.replace(hour=hour), keep=2)
    names = [b.name for b in backups.list_backups(tmp_path / "b")]
    assert names == ["pond-20261123-030000", "pond-20261123-020000"]


async def test_the_schedule_backs_up_at_once_then_waits(tmp_path: Path) -> None:
    db = await stopped_with_data(tmp_path / "d")
    errors: list[BaseException] = []
    task = asyncio.create_task(
        backups.run_schedule(
            tmp_path / "d",
            db,
            tmp_path / "b",
            every_s=3600,
            keep=7,
            now=lambda: datetime.now(UTC),
            on_error=errors.append,
            check_s=1,
        )
    )
    for _ in range(600):
        if backups.list_backups(tmp_path / "b"):
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(backups.list_backups(tmp_path / "b")) == 1 and errors == []


# -- restore -----------------------------------------------------------------------------------
async def test_restore_brings_back_the_data_and_keeps_the_replaced_files(tmp_path: Path) -> None:
    data = tmp_path / "d"
    db = await stopped_with_data(data)
    name = backups.make_backup(data, db, tmp_path / "b", NOW, keep=7).name
    db.write_bytes(b"")  # the accident
    aside = backups.restore(data, tmp_path / "b", name, now=NOW)
    assert (aside / "pond.sqlite3").read_bytes() == b""  # nothing deleted
    with Store(data) as store:  # starts again, with its opt-outs
        rows = store.sql.engine.connect().exec_driver_sql("SELECT contact_id FROM out_optout")
        assert rows.fetchall() == [("bob",)]


async def test_restore_is_refused_while_a_bot_runs(tmp_path: Path) -> None:
    data = tmp_path / "d"
    db = await stopped_with_data(data)
    name = backups.make_backup(data, db, tmp_path / "b", NOW, keep=7).name
    with InstanceLock(data):
        with pytest.raises(InstanceLocked, match=f"pid {os.getpid()}"):
            backups.restore(data, tmp_path / "b", name)
        out = io.StringIO()
        settings = _settings(data, tmp_path / "b")
        assert backup_cli.run(["restore", name, "--yes"], settings=settings, out=out) == 1
    assert db.stat().st_size > 0  # untouched


async def test_a_damaged_backup_is_not_restored(tmp_path: Path) -> None:
    data = tmp_path / "d"
    db = await stopped_with_data(data)
    path = backups.make_backup(data, db, tmp_path / "b", NOW, keep=7)
    damage(path / "pond.sqlite3", "out_optout")
    before = db.read_bytes()
    with pytest.raises(StoreError, match="没有通过完整性检查"):
        backups.restore(data, tmp_path / "b", path.name)
    assert db.read_bytes() == before


def _settings(data: Path, root: Path) -> Any:
    from pond import Settings

    return Settings.from_mapping({"BOT_DATA_DIR": str(data), "BACKUP_DIR": str(root)})


async def test_the_backup_command_lists_restores_and_checks(tmp_path: Path) -> None:
    data = tmp_path / "d"
    db = await stopped_with_data(data)
    settings = _settings(data, tmp_path / "b")
    out = io.StringIO()
    assert backup_cli.run(["now"], settings=settings, out=out) == 0
    name = backups.list_backups(tmp_path / "b")[0].name
    assert backup_cli.run(["list"], settings=settings, out=out) == 0
    assert backup_cli.run(["restore", name], settings=settings, out=out) == 1  # no --yes
    db.write_bytes(b"")
    assert backup_cli.run(["restore", name, "--yes"], settings=settings, out=out) == 0
    assert backup_cli.run(["check"], settings=settings, out=out) == 0
    text = out.getvalue()
    assert f"已备份到 {tmp_path / 'b' / name}" in text and f"  {name}  " in text
    assert "确认请加 --yes" in text and f"已恢复备份 {name}" in text and "数据文件完好" in text


# -- one bot per data dir ----------------------------------------------------------------------
def test_a_second_lock_is_refused_with_the_pid_of_the_first(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    first.acquire()
    assert instance_lock.holder(tmp_path) == os.getpid()
    with pytest.raises(InstanceLocked) as info:
        InstanceLock(tmp_path).acquire()
    assert info.value.pid == os.getpid() and f"pid {os.getpid()}" in str(info.value)
    assert "同一个数据目录只能运行一个机器人" in str(info.value)
    first.release()
    assert instance_lock.holder(tmp_path) is None
    InstanceLock(tmp_path).acquire()  # free again (and released when the process ends)


def _console(data: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bot.py"),
            "--console",
            "--data-dir",
            str(data),
            "--env-file",
            str(data.parent / "none"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "POND_NO_VENV": "1"},
    )


def test_two_bots_started_together_only_one_runs(tmp_path: Path) -> None:
    data = tmp_path / "d"
    bots = [_console(data), _console(data)]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and all(p.poll() is None for p in bots):
            time.sleep(0.1)
        refused = [p for p in bots if p.poll() is not None]
        assert len(refused) == 1
        running = next(p for p in bots if p is not refused[0])
        err = refused[0].stderr.read() if refused[0].stderr else ""
        assert refused[0].returncode == 2
        assert f"另一个 pond 机器人（pid {running.pid}）正在使用数据目录" in err, err
        assert instance_lock.holder(data) == running.pid
    finally:
        for p in bots:
            if p.poll() is None:
                p.communicate("/quit\n", timeout=60)
    assert instance_lock.holder(data) is None


# -- the command line agrees with the lock -----------------------------------------------------
@pytest.fixture
async def admin_sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await ChatSim.create(tmp_path / "data", plugins=["admin", "greeter"])
    yield chat
    await chat.close()


async def test_a_held_lock_means_running_even_without_a_heartbeat(admin_sim: ChatSim) -> None:
    sim = admin_sim
    config = health.health_config(sim.app.settings)
    assert health.bot_pid(sim.data_dir, None, sim.clock.now(), config) is None
    with InstanceLock(sim.data_dir):
        assert health.bot_pid(sim.data_dir, None, sim.clock.now(), config) == os.getpid()
        beat = health.Heartbeat(sim.app)  # serves the mailbox: the running bot

        async def sleep(_: float) -> None:
            await beat.serve_mailbox()

        out = io.StringIO()
        code = await admin_cli.run(
            ["status"], settings=sim.settings(), clock=sim.clock, out=out, sleep=sleep
        )
        assert code == 0 and "今天用量" in out.getvalue()
        assert sim.app.store.namespace("health").items("cli:") == []  # handed over, answered


async def test_a_fresh_heartbeat_without_the_lock_is_not_a_running_bot(sim: ChatSim) -> None:
    with InstanceLock(sim.data_dir):
        pass  # a bot ran here and stopped (or was killed): the lock file stays, free
    beat = health.Heartbeat(sim.app)
    row = beat.beat()  # looks fresh, pid alive (ours)
    config = health.health_config(sim.app.settings)
    assert health.is_live(row, sim.clock.now(), config)
    assert health.bot_pid(sim.data_dir, row, sim.clock.now(), config) is None


async def test_check_beside_a_running_bot_leaves_its_data_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], process_state: None
) -> None:
    db = await stopped_with_data(tmp_path / "d")
    before = db.read_bytes()
    import bot

    argv = ["--check", "--data-dir", str(tmp_path / "d"), "--env-file", str(tmp_path / "none")]
    with InstanceLock(tmp_path / "d"):  # the running bot
        code = await asyncio.to_thread(bot.main, argv)
    assert code == 0
    assert f"机器人正在运行，pid {os.getpid()}：数据文件没有检查" in capsys.readouterr().out
    assert db.read_bytes() == before  # no second App recovered the bot's outbox


async def test_a_failing_backup_tells_the_admins_once_and_the_bot_keeps_serving(
    tmp_path: Path,
) -> None:
    import bot

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the backup folder should be")
    sim = await ChatSim.create(tmp_path / "d", env={"BACKUP_DIR": str(blocker / "backups")})
    try:
        async with bot.scheduled_backups(sim.app):
            for _ in range(600):
                if sim.app.store.sql.events(kind="backup.failed"):
                    break
                await asyncio.sleep(0.05)
            said = await sim.drain()
            assert [s.to for s in said if s.key == "core/backup_alert"] == ["admin"]
            assert (await sim.say("alice", "你好")).keys == ["greeter/hello"]
    finally:
        await sim.close()


async def test_the_broadcast_tool_asks_the_lock_whether_a_bot_runs(tmp_path: Path) -> None:
    from test_broadcast_cli import tool
    from test_broadcasts import make, people, start, write_campaign

    from plugins._broadcasts import state

    sim = await make(tmp_path, OUTBOX_CAP_BROADCAST="2")
    people(sim, 4)
    write_campaign(sim)
    await start(sim)
    kv = state.Campaigns(sim.app.store.namespace("broadcasts"))
    with InstanceLock(sim.data_dir):
        kv.beat({"wall": time.time() - 3600, "transport": "memory"})  # an old beat, but...
        code, printed = await tool(sim, "status")
        assert code == 0 and "没有检测到运行中的机器人" not in printed  # ...the lock is held
    kv.beat({"wall": time.time(), "transport": "memory"})  # a fresh beat, but a free lock
    code, printed = await tool(sim, "status")
    assert code == 0 and "没有检测到运行中的机器人" in printed
    await sim.close()


async def test_an_unreadable_document_file_is_the_friendly_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], process_state: None
) -> None:
    await stopped_with_data(tmp_path / "d")
    doc = tmp_path / "d" / "docs" / "greeter.json"
    doc.unlink(missing_ok=True)
    doc.mkdir(parents=True)  # a directory where the file should be
    code, err = await asyncio.to_thread(bot_check, tmp_path / "d", capsys)
    assert code == 2 and f"数据文件错误：数据文件 {doc} 无法读取" in err, err
    assert "Traceback" not in err
