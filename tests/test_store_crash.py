"""Kill a writer with SIGKILL at random moments; nothing it acknowledged may be lost.

The writer (tests/store_crash_writer.py) runs as a separate process on a data dir shared by
all runs, so damage would accumulate. After each kill this process opens the Store the way
the bot does at start-up and checks every acknowledged write. Real sleeps happen only here,
in the orchestration of the subprocesses.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from pond.store import Store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

WRITER = Path(__file__).with_name("store_crash_writer.py")
RUNS = 24  # every 4th run is killed during start-up (import, open, create_all)
FLOOD_RUNS = 3
SEED = 20261123


@dataclass
class Killed:
    lines: list[str]  # complete stdout lines printed before the kill
    stderr: str


def _run_until_killed(data_dir: Path, args: list[str], delay: float, *, wait_ready: bool) -> Killed:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    watchdog = threading.Timer(60, proc.kill)  # never hang the suite
    watchdog.start()
    try:
        head = ""
        if wait_ready:
            head = proc.stdout.readline()
            if head != "ready\n":
                proc.kill()
                proc.wait()
                pytest.fail(f"writer did not start: {head!r}\n{proc.stderr.read()}")
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        # Read through the same buffered objects (communicate() would bypass them).
        out = head + proc.stdout.read()
        err = proc.stderr.read()
        proc.wait()
    finally:
        watchdog.cancel()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"writer exited by itself:\n{err}"
    complete = out.splitlines(keepends=True)
    return Killed([line.rstrip("\n") for line in complete if line.endswith("\n")], err)


def _check_all_modes_present(data_dir: Path, acked: set[int]) -> list[str]:
    """Open the store as the bot would and list what is missing (empty list: all good)."""
    problems: list[str] = []
    with Store(data_dir) as store:
        docs = {d["i"] for d in store.namespace("crash").table().all()}
        kv = dict(store.sql.kv_items("crash", "k"))
        seen_t = store.sql.seen_messages_table
        with store.sql.engine.connect() as conn:
            seen = set(conn.execute(sa.select(seen_t.c.msg_id)).scalars())
            integrity = conn.exec_driver_sql("PRAGMA integrity_check").scalar_one()
    if integrity != "ok":
        problems.append(f"sqlite integrity_check: {integrity}")
    for label, missing in (
        ("docs", sorted(i for i in acked if i not in docs)),
        ("kv", sorted(i for i in acked if kv.get(f"k{i}") != i)),
        ("seen", sorted(i for i in acked if f"m{i}" not in seen)),
    ):
        if missing:
            problems.append(f"{len(missing)} acknowledged {label} missing, e.g. {missing[:5]}")
    docs_dir = data_dir / "docs"
    for name in ("crash.json", "crash.json.bak"):
        if (docs_dir / name).exists():
            json.loads((docs_dir / name).read_text(encoding="utf-8"))  # whole, never torn
    leftovers = sorted(p.name for p in docs_dir.glob("*.tmp-*"))
    if leftovers:
        problems.append(f"temp files of dead writers left behind: {leftovers}")
    return problems


def test_kill_at_random_moments_loses_no_acknowledged_write(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data_dir = tmp_path / "data"
    all_acked: set[int] = set()
    failures: list[str] = []
    started = time.monotonic()
    for run in range(RUNS):
        at_startup = run % 4 == 3
        # Start-up kills land anywhere in interpreter start, imports, Store() and the
        # first writes; the others 5-150 ms into the write loop.
        delay = rng.uniform(0.005, 0.5) if at_startup else rng.uniform(0.005, 0.150)
        killed = _run_until_killed(
            data_dir, ["--start", str(run * 100_000)], delay, wait_ready=not at_startup
        )
        acked = {int(line[4:]) for line in killed.lines if line.startswith("ack ")}
        all_acked |= acked
        try:
            problems = _check_all_modes_present(data_dir, all_acked)
        except Exception as exc:  # e.g. StoreCorrupt: report it with the run, go on
            problems = [f"the store did not load: {type(exc).__name__}: {exc}"]
        if problems:
            failures.append(f"run {run} (delay {delay * 1000:.0f} ms): " + "; ".join(problems))
    passed = RUNS - len(failures)
    elapsed = time.monotonic() - started
    print(
        f"\nstore crash test: {passed}/{RUNS} runs kept every acknowledged write "
        f"({len(all_acked)} writes acknowledged, {elapsed:.1f} s)"
    )
    assert not failures, f"{passed}/{RUNS} runs passed:\n" + "\n".join(failures)
    assert len(all_acked) > RUNS, "the writer hardly wrote anything: the test proves little"


def test_kill_during_event_flood_keeps_flushed_events(tmp_path: Path) -> None:
    """Events are write-behind: after a kill, every *flushed* event is there and the
    database opens cleanly. Events recorded after the last flush may be lost; that is the
    documented trade-off for not committing once per message (bounded by flush_interval
    and batch_size in the bot)."""
    rng = random.Random(SEED + 1)
    data_dir = tmp_path / "data"
    for run in range(FLOOD_RUNS):
        delay = rng.uniform(0.05, 0.25)
        killed = _run_until_killed(
            data_dir, ["--mode", "events", "--start", str(run)], delay, wait_ready=True
        )
        flushed = [int(line[8:]) for line in killed.lines if line.startswith("flushed ")]
        acked = max(flushed, default=0)
        with Store(data_dir) as store:
            with store.sql.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
            rows = store.sql.events(kind=f"flood{run}")
        present = {r["data"]["i"] for r in rows}  # type: ignore[index]
        assert set(range(acked)) <= present, f"run {run}: flushed events lost"
        assert len(present) == len(rows), "an event was written twice"
        assert acked > 0, "the writer never flushed: the test proves little"
