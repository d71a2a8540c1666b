"""Mixed traffic under transport faults and kills (the "mixed" scenario of fault_inject.py).

Each child runs the real App in production mode (the committer and the outbox worker in
the background, real clock, short but real pacing gaps and bulk pauses) with:
- a broadcast of text + image (two parts on WeChat) to every recipient;
- customers writing "你好" (the greeter answers): every start redelivers all of their
  messages, as a transport does after a reconnect, so the inbox must drop what it has;
- a transport that fails at random: offline, throttled (操作过于频繁) or a timeout (which may
  or may not have delivered) on the second part of composite actions, and now and then on
  any part.
The parent SIGKILLs children at random moments (during sends and during pacing sleeps),
then lets a last run finish, and checks the delivery log against the journals:
0 duplicates per part, 0 deliveries above a cap, 0 lost replies, every unknown listed.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    import _env

    _env.bootstrap(venv=False)

import argparse
import asyncio
import logging
import os
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field, replace

import sqlalchemy as sa

import plugins
from pond import App, Contact, Message, Settings, SystemClock
from pond.actions import Action, ActionClass, ActionKind, Media, MediaKind
from pond.journal import Inbox, OutQueue, QueueStatus
from pond.ledger import Ledger, RowStatus
from pond.store import Store
from pond.transports.base import TransportError
from pond.transports.memory import MemoryTransport

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
JOB = "mixed-broadcast"
LOG = "deliveries.log"
CAP = 100_000


def child_env(data_dir: Path) -> dict[str, str]:
    return {
        "BOT_DATA_DIR": str(data_dir),
        "BOT_PERSONA_DIR": str(ROOT / "persona"),
        "BOT_PLUGINS": "greeter",
        "BOT_LOG_LEVEL": "WARNING",
        "OUTBOX_SWITCH_GAP_S": "0.002-0.01",
        "OUTBOX_CHAT_GAP_S": "0.005",
        "OUTBOX_TYPING_MAX_S": "0.01",
        "OUTBOX_BULK_PAUSE_EVERY": "4",
        "OUTBOX_BULK_PAUSE_S": "0.05-0.15",
        "OUTBOX_BURST": "1000",
        "OUTBOX_RATE_PER_MIN": "600000",
        "OUTBOX_QUIET_HOURS": "off",
        "OUTBOX_MARKETING_MIN_INTERVAL_H": "0",
        "OUTBOX_BREAKER_COOLDOWN_MIN": "0.0005",
        "OUTBOX_RETRY_BACKOFF_S": "0.05",
        "OUTBOX_CAP_SEND": str(CAP),
        "OUTBOX_CAP_BROADCAST": str(CAP),
        "OUTBOX_STOP_GRACE_S": "0.5",
    }


class FaultyTransport(MemoryTransport):
    """Logs every delivered part (job, to, part, pid) with one unbuffered write; fails the
    second part of composite actions often and any part now and then."""

    name = "fault-mixed"

    def __init__(
        self, clock: SystemClock, log_path: Path, rng: random.Random, *, faults: bool = True
    ) -> None:
        super().__init__(clock.now)
        self.atomic_media = False
        self._rng = rng
        self._faults = faults
        self._fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def perform(self, action: Action) -> None:
        await asyncio.sleep(self._rng.uniform(0.0, 0.002))
        part = "media" if action.media is not None and not action.text else "text"
        chance = (0.3 if part == "media" else 0.05) if self._faults else 0.0
        # Throttles are rarer: each one trips the breaker, whose pause doubles per trip.
        kinds, weights = ["offline", "throttled", "timeout"], [0.45, 0.1, 0.45]
        fault = self._rng.choices(kinds, weights)[0] if self._rng.random() < chance else ""
        if fault == "offline":
            raise TransportError("UNAVAILABLE: connection lost", offline=True)
        if fault == "throttled":
            raise TransportError("操作过于频繁", throttled=True)
        if fault != "timeout" or self._rng.random() < 0.5:  # a timeout may have delivered
            line = f"{action.job or 'reply'}\t{action.to}\t{part}\t{os.getpid()}\n"
            os.write(self._fd, line.encode("utf-8"))
        await asyncio.sleep(self._rng.uniform(0.0, 0.002))
        if fault == "timeout":
            raise TransportError("DEADLINE_EXCEEDED: no answer in time")

    async def stop(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        await super().stop()


def recipient(i: int) -> str:
    return f"m{i:04d}"


def customer(i: int) -> str:
    return f"q{i:04d}"


async def child_main(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    settings = Settings.from_mapping(child_env(data_dir))
    clock = SystemClock(settings.bot.timezone)
    rng = random.Random(args.seed)
    transport = FaultyTransport(clock, data_dir / LOG, rng, faults=not args.no_faults)
    app = App(settings, transport, clock=clock, rng=rng)
    for plugin in plugins.load(settings.bot.plugins):
        app.include(plugin)
    image = data_dir / "tea.jpg"
    image.write_bytes(b"\xff\xd8\xff fake jpeg")
    await app.start()
    app.start_background(scheduler=False)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)  # a clean stop
    try:
        text = app.persona.render("greeter/hello", chat_id="broadcast", name="朋友").text
        card = Action(
            ActionKind.SEND,
            to="",
            cls=ActionClass.MARKETING,
            text=text,
            key="greeter/hello",
            plugin="greeter",
            job=JOB,
            media=Media(MediaKind.IMAGE, path=str(image)),
        )
        rows = [
            replace(card, to=recipient(i), contact_id=recipient(i)) for i in range(args.recipients)
        ]
        app.outbox.enqueue_bulk(JOB, rows)
        for i in range(args.customers):  # a reconnect redelivers everything
            who = Contact(customer(i), customer(i))
            await app.dispatch(Message(f"wx-{customer(i)}", who, "你好", clock.now()))
        print("ready", flush=True)
        while app.outbox.pending_count() or app.ledger.active_jobs() or app._tasks:
            if stop.is_set():
                break
            await asyncio.sleep(0.05)
        print("stopped" if stop.is_set() else "done", flush=True)
    finally:
        await app.stop()
    return 0


@dataclass
class MixedReport:
    label: str = "混合流量 mixed traffic"
    recipients: int = 0
    customers: int = 0
    kills: int = 0
    clean_stops: int = 0
    replies: dict[str, int] = field(default_factory=dict)  # customer -> replies delivered
    parts_delivered: int = 0
    duplicates: int = 0
    cap_violations: int = 0
    lost_replies: int = 0
    unknown: int = 0
    unknown_listed: int = 0
    unclear_failed: int = 0
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def run_child(
    data_dir: Path,
    args: list[str],
    kill_after: float | None,
    timeout: float,
    how: signal.Signals = signal.SIGKILL,
) -> bool:
    """Run one child; send `how` (SIGKILL, or SIGTERM for a clean stop) `kill_after` s after
    its first delivery. True if it was killed by SIGKILL."""
    log = data_dir / LOG
    cmd = [sys.executable, str(SCRIPT), "--child", "--data-dir", str(data_dir), *args]
    env = {**os.environ, "POND_NO_VENV": "1", "PYTHONUNBUFFERED": "1"}
    with open(data_dir / "child.stderr", "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=env)
    deadline = time.monotonic() + timeout
    try:
        if kill_after is not None:
            base = log.stat().st_size if log.exists() else 0
            while proc.poll() is None and time.monotonic() < deadline:
                if log.exists() and log.stat().st_size > base:
                    break
                time.sleep(0.001)
            time.sleep(kill_after)
            if proc.poll() is None:
                os.kill(proc.pid, how)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # A SIGTERM that lands while the child is already exiting ends it with -SIGTERM.
    if proc.returncode not in (0, -signal.SIGKILL, -how):
        raise RuntimeError(f"child exited with {proc.returncode}; see {data_dir / 'child.stderr'}")
    return proc.returncode == -signal.SIGKILL


def mixed_loop(
    data_dir: Path,
    *,
    recipients: int = 150,
    customers: int = 40,
    kills: int = 20,
    seed: int = 20261123,
    max_kill_delay_s: float = 0.15,
    timeout: float = 120.0,
    clean_stops: int = 1,
    faults: bool = True,
) -> MixedReport:
    """`clean_stops` runs stopped cleanly (SIGTERM), then `kills` runs SIGKILLed, each soon
    after its first delivery, then a last run that finishes by itself."""
    started = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    report = MixedReport(recipients=recipients, customers=customers, clean_stops=clean_stops)
    args = ["--recipients", str(recipients), "--customers", str(customers)]
    if not faults:
        args.append("--no-faults")
    for n in range(clean_stops):
        delay = rng.uniform(0.0, max_kill_delay_s)
        run_child(data_dir, [*args, "--seed", str(seed + 500 + n)], delay, timeout, signal.SIGTERM)
    for n in range(kills):
        delay = rng.uniform(0.0, max_kill_delay_s)
        report.kills += run_child(data_dir, [*args, "--seed", str(seed + n)], delay, timeout)
    run_child(data_dir, [*args, "--seed", str(seed + 999)], None, timeout)
    evaluate(report, data_dir)
    report.elapsed_s = time.monotonic() - started
    return report


def evaluate(r: MixedReport, data_dir: Path) -> None:
    lines = [
        line.split("\t")
        for line in (data_dir / LOG).read_text(encoding="utf-8").splitlines()
        if line.count("\t") == 3
    ]
    per_part = Counter((job, to, part) for job, to, part, _ in lines)
    r.parts_delivered = len(lines)
    r.duplicates = sum(1 for n in per_part.values() if n > 1)
    with Store(data_dir) as store:
        ledger = Ledger(store.sql.engine, store.sql.metadata)
        queue = OutQueue(store.sql)
        inbox = Inbox(store.sql)
        rows = {row.recipient: row for row in ledger.rows_of(JOB)}
        c = ledger.counters.c
        with store.sql.engine.connect() as conn:
            sends = int(
                conn.execute(sa.select(sa.func.sum(c.n)).where(c.kind == "send")).scalar() or 0
            )
        with store.sql.engine.connect() as conn:
            t = queue.table
            replies = {
                a.to: (status, reason)
                for status, reason, a in (
                    (QueueStatus(s), reason, _action(text))
                    for s, reason, text in conn.execute(
                        sa.select(t.c.status, t.c.reason, t.c.action)
                    )
                )
                if a.key == "greeter/hello" and not a.job
            }
            j = ledger.jobs
            listed = {
                str(job)
                for job in conn.execute(
                    sa.select(j.c.job).where(j.c.job.like("unknown:%"))
                ).scalars()
            }
        handled = inbox.counts()
    p = r.problems
    if r.duplicates:
        twice = sorted(k for k, n in per_part.items() if n > 1)
        p.append(f"{r.duplicates} part(s) delivered twice, e.g. {twice[:3]}")
    if len(lines) > 2 * sends:
        r.cap_violations = len(lines) - 2 * sends
        p.append(f"{len(lines)} parts delivered but only {sends} sends counted against the cap")
    bulk_unknown = sum(1 for row in rows.values() if row.status is RowStatus.UNKNOWN)
    queue_unknown = sum(1 for s, _ in replies.values() if s is QueueStatus.UNKNOWN)
    r.unknown = bulk_unknown + queue_unknown
    # What the operator's review lists: unknown rows of the job, and one "unknown:" job per
    # other action that was mid-send.
    r.unknown_listed = bulk_unknown + min(queue_unknown, len(listed))
    if len(listed) < queue_unknown:
        p.append(f"{queue_unknown} unknown replies but {len(listed)} listed")
    if r.unknown_listed != r.unknown:
        p.append(f"{r.unknown} unknown but {r.unknown_listed} listed for the operator")
    if r.unknown > r.kills:
        p.append(f"{r.unknown} unknown for {r.kills} kills (at most one per kill)")
    pending = [
        to for to, row in rows.items() if row.status in (RowStatus.PENDING, RowStatus.SENDING)
    ]
    if pending or len(rows) != r.recipients:
        p.append(f"broadcast not settled: {len(rows)} rows, {len(pending)} pending")
    got_text = {to for job, to, part, _ in lines if job == "reply" and part == "text"}
    r.replies = {customer(i): per_part[("reply", customer(i), "text")] for i in range(r.customers)}
    for i in range(r.customers):
        who = customer(i)
        status, _ = replies.get(who, (None, ""))
        if who in got_text or status in (QueueStatus.UNKNOWN, QueueStatus.FAILED):
            r.unclear_failed += status is QueueStatus.FAILED and who not in got_text
            continue
        r.lost_replies += 1
    if r.lost_replies:
        p.append(f"{r.lost_replies} customer(s) never answered and nothing says why")
    if handled.get("received"):
        p.append(f"{handled['received']} inbound event(s) never handled")
    for to, row in rows.items():
        if (
            row.status is RowStatus.SENT
            and per_part[(JOB, to, "text")] + per_part[(JOB, to, "media")] < 2
        ):
            p.append(f"{to} is 'sent' but not every part was delivered")
            break


def _action(text: str) -> Action:
    from pond.ledger import action_from_json

    return action_from_json(text)


def format_report(r: MixedReport) -> str:
    rows = [
        ("收件人 recipients / 客户 customers", f"{r.recipients} / {r.customers}"),
        ("正常停止 clean stops / 强杀 kills", f"{r.clean_stops} / {r.kills}"),
        ("送达条数 parts delivered", r.parts_delivered),
        ("重复送达 duplicates (per part)", r.duplicates),
        ("超上限 cap violations", r.cap_violations),
        ("丢失的回复 lost replies", r.lost_replies),
        ("状态未知 unknown / 已列出 listed", f"{r.unknown} / {r.unknown_listed}"),
        ("超时未确认 unclear (failed)", r.unclear_failed),
        ("用时 time (s)", f"{r.elapsed_s:.1f}"),
        ("结果 result", "PASS" if r.passed else "FAIL"),
    ]
    text = "\n".join(f"{name:<34} {value}" for name, value in rows)
    return text + "".join(f"\n  ✗ {problem}" for problem in r.problems)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="混合流量故障注入 (mixed traffic fault injection)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--recipients", type=int, default=150)
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--no-faults", action="store_true", help="kills only, no transport faults")
    args = parser.parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.ERROR)
        return asyncio.run(child_main(args))
    report = mixed_loop(
        args.data_dir,
        recipients=args.recipients,
        customers=args.customers,
        kills=args.kills,
        seed=args.seed,
    )
    print(format_report(report))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
