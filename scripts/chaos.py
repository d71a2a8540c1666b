"""Fault injection: `python3 scripts/chaos.py [--kills N]`.

Breaks the bot on purpose and prints a table of scenario, expected, observed, pass:
- kill -9 during a broadcast (repeatedly), then resume;
- a corrupt data file (TinyDB document file and SQLite database) at start-up;
- a database that held data, emptied to 0 bytes or with a damaged page, at start-up;
- two bots started at the same instant on one data dir;
- a template broken during hot reload;
- a hostile template (one that would eat memory or CPU) at start-up and at hot reload;
- the transport dropping mid-send;
- the disk filling up while serving (a real write failure: RLIMIT_FSIZE in a child process),
  and the messages that arrived meanwhile answered once space is back.
Exit status 0 when every scenario passes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import ROOT, ensure_venv

if __name__ == "__main__":
    ensure_venv()

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

sys.path.insert(0, str(ROOT))

import fault_inject

import plugins
from pond import Action, ActionClass, ActionKind, App, Contact, FakeClock, Message, Settings
from pond.simulation import SimDriver
from pond.transports.base import TransportError
from pond.transports.memory import MemoryTransport


@dataclass
class Row:
    scenario: str
    expected: str
    observed: str
    passed: bool


def build(
    data_dir: Path, persona_dir: Path = ROOT / "persona", **env: str
) -> tuple[App, MemoryTransport, FakeClock]:
    clock = FakeClock(datetime(2026, 11, 23, 10, 0))
    settings = Settings.from_mapping(
        {
            "BOT_DATA_DIR": str(data_dir),
            "BOT_PERSONA_DIR": str(persona_dir),
            "BOT_ADMIN_IDS": "admin",
            "BOT_LOG_LEVEL": "CRITICAL",
            **env,
        }
    )
    transport = MemoryTransport(clock.now)
    app = App(settings, transport, clock=clock, rng=random.Random(3))
    for plugin in plugins.load(["greeter"]):
        app.include(plugin)
    return app, transport, clock


def say(who: str, text: str, clock: FakeClock, n: int) -> Message:
    return Message(f"chaos-{who}-{n}", Contact(who, who), text, clock.now())


def kill_during_broadcast(tmp: Path, kills: int) -> Row:
    report = fault_inject.kill_loop(tmp / "kill", recipients=120, kills=kills)
    observed = (
        f"{report.kills} kills: delivered {report.delivered}/{report.recipients}, "
        f"duplicates {report.duplicates}, unknown {report.unknown}, "
        f"cap violations {report.cap_violations}"
    )
    return Row(
        "kill -9 during a broadcast",
        "no duplicates, unknown <= kills, all accounted",
        observed,
        report.passed,
    )


def corrupt_data_files(tmp: Path) -> list[Row]:
    rows = []
    for what, relpath, garbage in [
        ("a corrupt document file", "docs/greeter.json", b'{"_default": {"1": {"i": '),
        ("a corrupt SQLite database", "pond.sqlite3", b"this is not a database" * 100),
    ]:
        data = tmp / f"corrupt-{relpath.replace('/', '-')}"
        app, _, _ = build(data)
        app.store.namespace("greeter").table("notes").insert({"i": 1})
        app.store.close()
        target = data / relpath
        target.write_bytes(garbage)
        result = subprocess.run(
            [sys.executable, str(ROOT / "bot.py"), "--check", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            env={**os.environ, "POND_NO_VENV": "1"},
        )
        kept = target.read_bytes() == garbage
        names_file = str(target.name) in result.stderr
        copies = list(target.parent.glob(target.name + ".corrupt-*"))
        observed = (
            f"exit {result.returncode}, names the file: {names_file}, "
            f"original untouched: {kept}, copies kept: {len(copies)}"
        )
        rows.append(
            Row(
                what,
                "start-up refused naming the file; nothing reset",
                observed,
                result.returncode == 2 and names_file and kept,
            )
        )
    return rows


async def _served(data: Path) -> Path:
    """A bot that answered, recorded an opt-out, and stopped: a database with data."""
    app, _, clock = build(data)
    await app.start()
    await app.dispatch(say("alice", "你好", clock, 1))
    await SimDriver(app, clock).settle()
    app.outbox.opt_out("bob", "chaos")
    await app.stop()
    return data / "pond.sqlite3"


def _break_page(db: Path, table: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with db.open("r+b") as fh:
        fh.seek((page - 1) * size)
        fh.write(os.urandom(size))


def damaged_database(tmp: Path) -> list[Row]:
    rows = []
    for what, damage in [
        ("a 0-byte database (it held data)", lambda db: db.write_bytes(b"")),
        ("a damaged page in the opt-out table", lambda db: _break_page(db, "out_optout")),
    ]:
        data = tmp / f"damaged-{len(rows)}"
        db = asyncio.run(_served(data))
        damage(db)
        before = db.read_bytes()
        result = subprocess.run(
            [sys.executable, str(ROOT / "bot.py"), "--check", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            env={**os.environ, "POND_NO_VENV": "1"},
        )
        names = str(db) in result.stderr
        restore = "scripts/backup.py restore" in result.stderr
        clean = "Traceback" not in result.stderr
        kept = db.read_bytes() == before
        observed = (
            f"exit {result.returncode}, names the file: {names}, says how to restore: "
            f"{restore}, no traceback: {clean}, file untouched: {kept}"
        )
        ok = result.returncode == 2 and names and restore and clean and kept
        rows.append(Row(what, "start-up refused naming the file and the restore", observed, ok))
    return rows


def two_bots(tmp: Path) -> Row:
    data = tmp / "two-bots"
    command = [sys.executable, str(ROOT / "bot.py"), "--console", "--data-dir", str(data)]
    bots = [
        subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "POND_NO_VENV": "1"},
        )
        for _ in range(2)
    ]
    try:
        for _ in range(600):  # started in the same instant: one must give way
            if any(p.poll() is not None for p in bots):
                break
            time.sleep(0.1)
        refused = [p for p in bots if p.poll() is not None]
        err = refused[0].stderr.read() if refused and refused[0].stderr else ""
        other = [p.pid for p in bots if p not in refused]
        names_pid = bool(other) and f"pid {other[0]}" in err
        observed = f"running {2 - len(refused)}, refused {len(refused)}, names the pid: {names_pid}"
        ok = len(refused) == 1 and refused[0].returncode == 2 and names_pid
    finally:
        for p in bots:
            if p.poll() is None:
                p.communicate("/quit\n", timeout=60)
    return Row(
        "two bots started at once on one data dir",
        "one runs, the other names its pid",
        observed,
        ok,
    )


async def broken_template(tmp: Path) -> Row:
    persona = tmp / "persona"
    shutil.copytree(ROOT / "persona", persona)
    app, transport, clock = build(tmp / "template", persona)
    await app.start()
    await app.dispatch(say("alice", "你好", clock, 1))
    await SimDriver(app, clock).settle()
    before = transport.performed[-1].action.text
    hello = persona / "greeter" / "hello.j2"
    hello.write_text(hello.read_text(encoding="utf-8") + "\n{% if %}\n", encoding="utf-8")
    os.utime(hello, ns=(hello.stat().st_atime_ns, hello.stat().st_mtime_ns + 10**10))
    errors = app.reload_persona()
    await app.dispatch(say("bob", "你好", clock, 2))
    await SimDriver(app, clock).settle()
    keys = [p.action.key for p in transport.performed[1:]]
    await app.stop()
    ok = bool(errors) and "greeter/hello" in keys and "core/template_alert" in keys
    observed = (
        f"reload refused: {bool(errors)} ({errors[0] if errors else '-'}); "
        f"still answering: {'greeter/hello' in keys}; admin told: "
        f"{'core/template_alert' in keys}; first reply length {len(before)}"
    )
    return Row(
        "a template broken during hot reload",
        "last good copy keeps serving, admin told",
        observed,
        ok,
    )


HOSTILE_AT_START = "{#\nname = \"x\"\n#}\n{{ '%0999999999d' % 1 }} {{ name }}\n"
HOSTILE_AT_RELOAD = (
    '{#\nname = "x"\n#}\n{% for i in range(10000) %}{% for j in range(10000) %}'
    "{% endfor %}{% endfor %}{{ name }}\n"
)


def _check_run(persona: Path, data: Path) -> tuple[int, str, float, int]:
    """`bot.py --check` in a child: exit status, stderr, CPU seconds, peak RSS in bytes."""
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "bot.py"), "--check", "--data-dir", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "POND_NO_VENV": "1", "BOT_PERSONA_DIR": str(persona)},
    )
    assert child.stderr is not None
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, stderr, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def hostile_template_at_start(tmp: Path) -> Row:
    clean = tmp / "hostile-start-clean"
    shutil.copytree(ROOT / "persona", clean)
    hostile = tmp / "hostile-start" / "persona"
    shutil.copytree(ROOT / "persona", hostile)
    (hostile / "greeter" / "hello.j2").write_text(HOSTILE_AT_START, encoding="utf-8")
    _, _, clean_cpu, clean_rss = _check_run(clean, tmp / "hostile-start-data-1")
    code, stderr, cpu, rss = _check_run(hostile, tmp / "hostile-start-data-2")
    names = "greeter/hello.j2:4" in stderr
    extra_cpu, extra_mb = cpu - clean_cpu, (rss - clean_rss) / 2**20
    observed = (
        f"exit {code}, names file:line: {names}, CPU {cpu:.2f} s "
        f"({extra_cpu:+.2f} s vs a clean start), peak RSS {extra_mb:+.1f} MB vs a clean start"
    )
    ok = code == 2 and names and extra_cpu < 2.0 and extra_mb < 50
    return Row(
        "a hostile template at start-up ('%0999999999d' % 1)",
        "refused naming file:line, < 2 s CPU and < 50 MB more than a clean start",
        observed,
        ok,
    )


def _peak_rss_reset() -> int | None:
    """Reset this process's peak RSS to its current RSS (Linux); returns the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
        return _proc_status("VmRSS")
    except OSError:
        return None


def _proc_status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {key} in /proc/self/status")


async def hostile_template_at_reload(tmp: Path) -> Row:
    persona = tmp / "hostile-reload" / "persona"
    shutil.copytree(ROOT / "persona", persona)
    app, transport, clock = build(tmp / "hostile-reload-data", persona)
    await app.start()
    hello = persona / "greeter" / "hello.j2"
    hello.write_text(HOSTILE_AT_RELOAD, encoding="utf-8")
    os.utime(hello, ns=(hello.stat().st_atime_ns, hello.stat().st_mtime_ns + 10**10))
    rss = _peak_rss_reset()
    cpu = time.process_time()
    reload = asyncio.create_task(app.reload())  # the operator's reload: trial render in a worker
    await app.dispatch(say("bob", "你好", clock, 1))  # a customer writes meanwhile
    await SimDriver(app, clock).settle()
    problems = await reload
    cpu = time.process_time() - cpu
    extra_mb = (_proc_status("VmHWM") - rss) / 2**20 if rss is not None else float("nan")
    await app.dispatch(say("carol", "你好", clock, 2))
    await SimDriver(app, clock).settle()
    keys = [p.action.key for p in transport.performed]
    texts = [p.action.text for p in transport.performed if p.action.key == "greeter/hello"]
    await app.stop()
    said = " ".join(problems.get("persona", []))
    refused = "步（循环次数" in said  # the steps limit, as the operator reads it
    ok = (
        refused
        and keys.count("greeter/hello") == 2
        and "core/template_alert" in keys
        and all("carol" in t or "bob" in t for t in texts)
        and cpu < 2.0
        and extra_mb < 50
    )
    observed = (
        f"refused: {refused}; both customers answered: {keys.count('greeter/hello') == 2}; "
        f"admin told: {'core/template_alert' in keys}; CPU {cpu:.2f} s; "
        f"peak RSS {extra_mb:+.1f} MB"
    )
    return Row(
        "a hostile template at hot reload (nested loops)",
        "refused with the last good copy serving, admin told, < 2 s CPU, < 50 MB",
        observed,
        ok,
    )


async def transport_drops(tmp: Path) -> Row:
    app, transport, clock = build(tmp / "drop", OUTBOX_MARKETING_MIN_INTERVAL_H="0")
    await app.start()
    offline = TransportError("stream closed", offline=True)
    # The connection drops three times mid-run, and once the flag itself says offline.
    transport.failures = [None, offline, None, offline, offline, None]
    for i in range(10):
        await app.dispatch(say(f"c{i}", "你好", clock, i))
    job = [
        Action(
            ActionKind.SEND,
            to=f"b{i}",
            cls=ActionClass.MARKETING,
            text="新品",
            key="greeter/hello",
            job="chaos",
            contact_id=f"b{i}",
        )
        for i in range(10)
    ]
    app.outbox.enqueue_bulk("chaos", job)
    await SimDriver(app, clock).settle()
    transport.connected = False
    await SimDriver(app, clock).advance(60)
    transport.connected = True
    await SimDriver(app, clock).advance(3600)
    delivered = [p.action.to for p in transport.performed]
    summary = app.ledger.summary("chaos")
    await app.stop()
    duplicates = len(delivered) - len(set(delivered))
    ok = len(set(delivered)) == 20 and duplicates == 0 and summary == {"sent": 10}
    observed = f"delivered {len(set(delivered))}/20, duplicates {duplicates}, bulk rows {summary}"
    return Row(
        "the transport drops mid-send",
        "every reply and bulk row sent once, none lost",
        observed,
        ok,
    )


DISK_FULL_CHILD = "disk-full-child"


async def disk_full_child(data_dir: Path) -> dict[str, object]:
    """Runs in its own process: fills the 'disk' with RLIMIT_FSIZE, then frees it."""
    app, transport, clock = build(data_dir)
    await app.start()
    n = 0
    for who in ("a0", "a1"):
        n += 1
        await app.dispatch(say(who, "你好", clock, n))
        await SimDriver(app, clock).settle()
    before = len(transport.performed)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write returns EFBIG instead
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # no file may grow: "disk full"
    app.strict = False
    errors = _ErrorCounter()
    logging.getLogger("pond").addHandler(errors)
    logging.getLogger("pond").setLevel(logging.ERROR)
    failures = 0
    for i in range(5):
        n += 1
        try:
            await app.dispatch(say(f"f{i}", "你好", clock, n))
            await SimDriver(app, clock).settle()
        except Exception:
            failures += 1  # must not happen: the bot keeps serving
    during = len(transport.performed) - before
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    await SimDriver(app, clock).advance(120)
    for i in range(3):
        n += 1
        await app.dispatch(say(f"g{i}", "你好", clock, n))
        await SimDriver(app, clock).settle()
    after = len(transport.performed) - before - during
    await SimDriver(app, clock).advance(600)
    # Those who wrote while the disk was full: answered once space came back, once each.
    answered = [p.action.to for p in transport.performed if p.action.to.startswith("f")]
    await app.stop()
    return {
        "crashed_calls": failures,
        "errors_logged": errors.count,
        "sent_while_full": during,
        "sent_after": after,
        "answered_meanwhile": len(set(answered)),
        "answered_twice": len(answered) - len(set(answered)),
    }


class _ErrorCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def disk_full(tmp: Path) -> list[Row]:
    result = subprocess.run(
        [sys.executable, __file__, DISK_FULL_CHILD, str(tmp / "disk")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "POND_NO_VENV": "1"},
    )
    if result.returncode != 0:
        return [
            Row(
                "disk full while serving",
                "errors reported, no crash, recovers",
                f"child failed: {result.stderr.strip()[-300:]}",
                False,
            )
        ]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    after = int(figures["sent_after"])
    ok = figures["crashed_calls"] == 0 and int(figures["errors_logged"]) > 0 and after >= 3
    observed = (
        f"crashes {figures['crashed_calls']}, errors logged {figures['errors_logged']}, "
        f"replies while full "
        f"{figures['sent_while_full']}, replies and held sends after space returned {after}"
    )
    meanwhile, twice = int(figures["answered_meanwhile"]), int(figures["answered_twice"])
    return [
        Row(
            "disk full while serving",
            "errors reported, no crash, serves again after",
            observed,
            ok,
        ),
        Row(
            "disk full, then space back",
            "the 5 messages that arrived while full are answered after, once each",
            f"answered {meanwhile} of 5, {twice} twice",
            meanwhile == 5 and twice == 0,
        ),
    ]


def table(rows: list[Row]) -> str:
    lines = ["| scenario | expected | observed | pass |", "|---|---|---|---|"]
    lines += [
        f"| {r.scenario} | {r.expected} | {r.observed} | {'PASS' if r.passed else 'FAIL'} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == [DISK_FULL_CHILD]:
        logging.basicConfig(level=logging.CRITICAL)
        print(json.dumps(asyncio.run(disk_full_child(Path(argv[1])))))
        return 0
    logging.basicConfig(level=logging.CRITICAL)  # the table is the output
    parser = argparse.ArgumentParser(prog="chaos.py", description="pond 故障演练表")
    parser.add_argument("--kills", type=int, default=10, help="群发中强杀几次（默认 10）")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pond-chaos-") as name:
        tmp = Path(name)
        steps: list[Callable[[], Row | list[Row]]] = [
            lambda: kill_during_broadcast(tmp, args.kills),
            lambda: corrupt_data_files(tmp),
            lambda: damaged_database(tmp),
            lambda: two_bots(tmp),
            lambda: asyncio.run(broken_template(tmp)),
            lambda: hostile_template_at_start(tmp),
            lambda: asyncio.run(hostile_template_at_reload(tmp)),
            lambda: asyncio.run(transport_drops(tmp)),
            lambda: disk_full(tmp),
        ]
        rows: list[Row] = []
        for step in steps:
            got = step()
            rows.extend(got if isinstance(got, list) else [got])
            print(f"  {rows[-1].scenario}：{'通过' if rows[-1].passed else '未通过'}", flush=True)
    print()
    print(table(rows))
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
