"""Fault injection for the outbound governor: SIGKILL a broadcast at random moments.

    python3 scripts/fault_inject.py                       # both scenarios, default sizes
    python3 scripts/fault_inject.py --kills 20 --recipients 500 --seed 7
    python3 scripts/fault_inject.py --scenario cap --cap 50 --cap-recipients 120

Each run is a child process (this script with --child) that runs the real App (plugins
loaded with plugins.load, the real SystemClock, the real SQLite ledger) on one data dir,
enqueues a bulk marketing job to every recipient (idempotent: a restart adds no rows) and
drains the outbox. Its transport appends one line per delivered action to an append-only
log with a single unbuffered write, so the parent can count real deliveries across kills.
The parent kills the child with SIGKILL 0-50 ms (seeded) after it reports "ready", restarts
it on the same data dir, and finally lets the last run finish.

Scenarios:

- kill loop: N kills during one broadcast. Caps are set high enough never to bind.
- daily cap: OUTBOX_CAP_BROADCAST below the recipient count, restarted several times (with
  kills where they land); deliveries on one day must never exceed the cap, the remainder
  stays pending for the next day.

Acceptance: 0 duplicate deliveries, 0 deliveries above a daily cap, unknown rows <= kills,
and every recipient accounted for. Exit code 0 on pass, 1 on fail.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    import _env  # scripts/ is sys.path[0] when run as a program

    # Children are started with the venv python already.
    _env.bootstrap(venv="--child" not in sys.argv)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import unicodedata  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import IO  # noqa: E402

import plugins  # noqa: E402
from pond import App, Settings, SystemClock  # noqa: E402
from pond.actions import Action, ActionClass, ActionKind  # noqa: E402
from pond.ledger import JobStatus, Ledger, RowStatus  # noqa: E402
from pond.store import Store  # noqa: E402
from pond.transports.memory import MemoryTransport  # noqa: E402

SCRIPT = Path(__file__).resolve()
JOB = "fault-broadcast"
DELIVERY_LOG = "deliveries.log"
DEFAULT_SEED = 20261123
CHILD_TIMEOUT_S = 120.0


# ---------------------------------------------------------------------------------------
# The child: one run of the real App on a shared data dir.
# ---------------------------------------------------------------------------------------


def child_env(data_dir: Path, *, cap_send: int, cap_broadcast: int) -> dict[str, str]:
    """Settings that run on real time yet fast: no gaps, no typing delay, no bulk pauses,
    a bucket that never empties and no quiet hours (so the time of day does not matter).

    The marketing frequency rule is off: it would skip most re-sent rows as "too soon" and
    so hide a journal that forgets; here the at-most-once journal must hold on its own."""
    return {
        "BOT_DATA_DIR": str(data_dir),
        "BOT_PERSONA_DIR": str(ROOT / "persona"),
        "BOT_PLUGINS": "greeter",
        "OUTBOX_SWITCH_GAP_S": "0",
        "OUTBOX_CHAT_GAP_S": "0",
        "OUTBOX_TYPING_MAX_S": "0",
        "OUTBOX_BULK_PAUSE_EVERY": "0",
        "OUTBOX_BURST": "1000",
        "OUTBOX_RATE_PER_MIN": "600000",
        "OUTBOX_QUIET_HOURS": "off",
        "OUTBOX_MARKETING_MIN_INTERVAL_H": "0",
        "OUTBOX_CAP_SEND": str(cap_send),
        "OUTBOX_CAP_BROADCAST": str(cap_broadcast),
    }


def recipient_id(i: int) -> str:
    return f"c{i:04d}"


class LoggedTransport(MemoryTransport):
    """A memory transport whose deliveries survive the process: perform() appends one line
    (day, job, recipient, pid) to an append-only file with one unbuffered os.write, which
    the kernel keeps when the process is SIGKILLed (fsync only matters for power loss).

    It sleeps a little before the delivery (the request on its way) and after it (the
    answer on its way back), so kills land both before and after the message went out."""

    name = "fault-log"

    def __init__(
        self,
        clock: SystemClock,
        log_path: Path,
        rng: random.Random,
        *,
        max_delay_s: float = 0.003,
        fsync: bool = False,
    ) -> None:
        super().__init__(clock.now)
        self._clock = clock
        self._rng = rng
        self._max_delay_s = max_delay_s
        self._fsync = fsync
        self._fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def perform(self, action: Action) -> None:
        await asyncio.sleep(self._rng.uniform(0.0, self._max_delay_s * 2 / 3))
        await super().perform(action)  # scripted failures, if any, and the in-memory record
        day = self._clock.now().date().isoformat()
        line = f"{day}\t{action.job}\t{action.to}\t{os.getpid()}\n"
        os.write(self._fd, line.encode("utf-8"))
        if self._fsync:
            os.fsync(self._fd)
        self.performed.clear()  # the file is the record; keep memory flat
        await asyncio.sleep(self._rng.uniform(0.0, self._max_delay_s / 3))

    async def stop(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        await super().stop()


def build_actions(app: App, recipients: int) -> list[Action]:
    # One rendered text for everyone, as an operator's broadcast would be.
    text = app.persona.render("greeter/hello", chat_id="broadcast", name="朋友").text
    return [
        Action(
            kind=ActionKind.SEND,
            to=recipient_id(i),
            cls=ActionClass.MARKETING,
            text=text,
            key="greeter/hello",
            plugin="greeter",
            job=JOB,
            contact_id=recipient_id(i),
        )
        for i in range(recipients)
    ]


async def child_main(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    settings = Settings.from_mapping(
        child_env(data_dir, cap_send=args.cap_send, cap_broadcast=args.cap_broadcast)
    )
    clock = SystemClock(settings.bot.timezone)
    rng = random.Random(args.seed)
    transport = LoggedTransport(clock, Path(args.log), rng, fsync=args.fsync)
    app = App(settings, transport, clock=clock, rng=rng)
    for plugin in plugins.load(settings.bot.plugins):
        app.include(plugin)
    unknown_before = len(app.ledger.rows_of(JOB, RowStatus.UNKNOWN))
    await app.start()  # outbox.recover(): rows left "sending" become "unknown"
    try:
        recovered = len(app.ledger.rows_of(JOB, RowStatus.UNKNOWN)) - unknown_before
        if args.sabotage:
            sabotage(app, args.sabotage)
        # Every start enqueues the whole job again, as a replayed schedule would.
        added = app.outbox.enqueue_bulk(JOB, build_actions(app, args.recipients))
        print(f"ready added={added} recovered={recovered}", flush=True)
        steps = await app.outbox.drain()
        summary = json.dumps(app.ledger.summary(JOB), sort_keys=True)
        if args.linger:
            # Stay up like the production worker, with the rest deferred (e.g. to tomorrow),
            # until the parent kills this process.
            print(f"idle steps={steps} {summary}", flush=True)
            await app.outbox.run()
        print(f"done steps={steps} {summary}", flush=True)
    finally:
        await app.stop()
    return 0


def sabotage(app: App, how: str) -> None:
    """Break the governor on purpose, to prove the checks can fail (tests only).

    replay: a journal that forgets: every row already sent or unknown is pending again.
    nocap: the daily counters never refuse."""
    if how == "replay":
        now = app.clock.now().timestamp()
        for row in app.ledger.rows_of(JOB):
            if row.status in (RowStatus.SENT, RowStatus.UNKNOWN):
                app.ledger.mark(JOB, row.recipient, RowStatus.PENDING, now, "sabotage")
        if app.ledger.job_status(JOB) is not None:
            app.ledger.set_job_status(JOB, JobStatus.ACTIVE)
    elif how == "nocap":
        app.ledger.reserve_in = lambda conn, day, limits: None  # type: ignore[method-assign]
    else:
        raise ValueError(f"unknown sabotage {how!r}")


# ---------------------------------------------------------------------------------------
# The parent: start, kill, restart, then check the log against the ledger.
# ---------------------------------------------------------------------------------------


class ChildError(RuntimeError):
    """A child did not start or did not finish: the harness, not the governor, failed."""


@dataclass
class Run:
    index: int
    kill_delay: float | None
    after: str  # what the kill delay was counted from: ready, delivery or idle
    killed: bool
    returncode: int
    added: int
    recovered: int
    done: bool  # the child drained and exited by itself


@dataclass
class Report:
    scenario: str
    label: str
    recipients: int
    cap: int  # the binding daily cap on broadcast deliveries
    sent: int = 0
    delivered: int = 0
    duplicates: int = 0
    unknown: int = 0
    skipped: int = 0
    failed: int = 0
    pending: int = 0
    sending: int = 0
    cap_violations: int = 0
    kills: int = 0
    runs: int = 0
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _wait_for_growth(path: Path, proc: subprocess.Popen[str], deadline: float) -> None:
    """Until `path` grows (the child delivered something), it exits, or the deadline."""
    base = _size(path)
    while _size(path) == base and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return ""


@dataclass(frozen=True)
class Plan:
    """What every run of one scenario shares."""

    data_dir: Path
    recipients: int
    cap_send: int
    cap_broadcast: int
    fsync: bool = False
    timeout: float = CHILD_TIMEOUT_S
    sabotage: str = ""  # harness self-test only, see sabotage()
    linger: bool = False  # children keep running the outbox worker once drained


def run_child(
    plan: Plan, *, index: int, seed: int, kill_delay: float | None, after: str = "ready"
) -> Run:
    """Start one child; SIGKILL it `kill_delay` seconds after `after`: "ready" (started and
    enqueued), "delivery" (its first delivery after ready) or "idle" (drained, lingering).
    With None it must finish by itself. A kill counts only if the child was still running
    when the signal landed."""
    data_dir, timeout = plan.data_dir, plan.timeout
    stderr_path = data_dir / f"child-{index:02d}.stderr"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--child",
        "--data-dir",
        str(data_dir),
        "--log",
        str(data_dir / DELIVERY_LOG),
        "--recipients",
        str(plan.recipients),
        "--cap-send",
        str(plan.cap_send),
        "--cap-broadcast",
        str(plan.cap_broadcast),
        "--seed",
        str(seed),
    ]
    if plan.fsync:
        cmd.append("--fsync")
    if plan.sabotage:
        cmd += ["--sabotage", plan.sabotage]
    if plan.linger and kill_delay is not None:
        cmd.append("--linger")
    env = {**os.environ, "POND_NO_VENV": "1", "PYTHONUNBUFFERED": "1"}
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=env
        )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    out: list[str] = []
    line_wanted = "idle" if after == "idle" else "ready"
    try:
        while not out or not out[-1].startswith(line_wanted):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise ChildError(
                    f"run {index}: no {line_wanted!r} within {timeout:.0f} s"
                ) from None
            if line is None:
                proc.wait()
                raise ChildError(
                    f"run {index}: exited with {proc.returncode} before {line_wanted!r}:\n"
                    + _tail(stderr_path)
                )
            out.append(line)
        if after == "delivery":
            _wait_for_growth(data_dir / DELIVERY_LOG, proc, deadline)
        if kill_delay is not None:
            time.sleep(kill_delay)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise ChildError(f"run {index}: did not finish within {timeout:.0f} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        proc.stdout.close()
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line is not None:
            out.append(line)
    # Judged by how it ended: a signal sent to a child already exiting does not count.
    killed = proc.returncode == -signal.SIGKILL
    if not killed and proc.returncode != 0:
        raise ChildError(f"run {index}: exit code {proc.returncode}:\n" + _tail(stderr_path))
    ready = next((line for line in out if line.startswith("ready")), "ready")
    fields = dict(part.split("=", 1) for part in ready.split()[1:])
    return Run(
        index=index,
        kill_delay=kill_delay,
        after=after,
        killed=killed,
        returncode=proc.returncode,
        added=int(fields["added"]),
        recovered=int(fields["recovered"]),
        done=any(line.startswith("done") for line in out) and not killed,
    )


def read_deliveries(log_path: Path) -> list[tuple[str, str, str]]:
    """(day, job, recipient) per delivered action; a torn last line is ignored."""
    if not log_path.exists():
        return []
    deliveries = []
    for line in log_path.read_text(encoding="utf-8").splitlines(keepends=True):
        parts = line.rstrip("\n").split("\t")
        if line.endswith("\n") and len(parts) == 4:
            deliveries.append((parts[0], parts[1], parts[2]))
    return deliveries


def evaluate(report: Report, data_dir: Path, runs: Sequence[Run], *, cap_must_bind: bool) -> Report:
    """Fill `report` from the delivery log and the ledger, and list what breaks the rules."""
    deliveries = [d for d in read_deliveries(data_dir / DELIVERY_LOG) if d[1] == JOB]
    per_recipient = Counter(to for _, _, to in deliveries)
    per_day = Counter(day for day, _, _ in deliveries)
    with Store(data_dir) as store:
        ledger = Ledger(store.sql.engine, store.sql.metadata)
        rows = ledger.rows_of(JOB)
        counted = {day: ledger.counts(day) for day in per_day}
    status = {row.recipient: row.status for row in rows}
    tally = Counter(status.values())

    r = report
    r.runs = len(runs)
    r.kills = sum(run.killed for run in runs)
    r.sent = tally[RowStatus.SENT]
    r.delivered = len(deliveries)
    r.duplicates = sum(1 for n in per_recipient.values() if n > 1)
    r.unknown = tally[RowStatus.UNKNOWN]
    r.skipped = tally[RowStatus.SKIPPED]
    r.failed = tally[RowStatus.FAILED]
    r.pending = tally[RowStatus.PENDING]
    r.sending = tally[RowStatus.SENDING]
    r.cap_violations = sum(max(0, n - r.cap) for n in per_day.values())

    p = r.problems
    if r.duplicates:
        twice = sorted(to for to, n in per_recipient.items() if n > 1)
        p.append(f"{r.duplicates} recipient(s) delivered more than once, e.g. {twice[:5]}")
    if r.cap_violations:
        p.append(f"deliveries per day {dict(per_day)} exceed the daily cap {r.cap}")
    if r.unknown > r.kills:
        p.append(f"{r.unknown} unknown rows but only {r.kills} kills (at most one per kill)")
    if len(rows) != r.recipients:
        p.append(f"the ledger has {len(rows)} rows for {r.recipients} recipients")
    if r.sending:
        p.append(f"{r.sending} row(s) still 'sending' after a clean finish")
    settled = r.sent + r.unknown + r.skipped + r.failed
    if cap_must_bind:
        if settled + r.pending != r.recipients:
            p.append(f"sent+unknown+skipped+failed+pending = {settled + r.pending}")
        last_day = max(per_day, default=None)
        if last_day is None or counted[last_day].get("broadcast", 0) < r.cap:
            p.append("the daily cap was never reached: this run proves nothing about caps")
    elif settled != r.recipients or r.pending:
        p.append(f"sent+unknown+skipped+failed = {settled} with {r.pending} pending")
    # The ledger and the log must agree: "sent" means delivered, and a delivered
    # recipient is either "sent" or "unknown" (never pending: it would go out again).
    never = sorted(
        to for to, s in status.items() if s is RowStatus.SENT and to not in per_recipient
    )
    if never:
        p.append(f"{len(never)} row(s) 'sent' without a delivery, e.g. {never[:5]}")
    loose = sorted(
        to for to in per_recipient if status.get(to) not in (RowStatus.SENT, RowStatus.UNKNOWN)
    )
    if loose:
        p.append(f"{len(loose)} delivered recipient(s) not sent/unknown, e.g. {loose[:5]}")
    # Counters are committed before each action, so they can only run ahead of deliveries.
    for day, n in sorted(per_day.items()):
        if counted[day].get("broadcast", 0) < n:
            p.append(f"{day}: {n} deliveries but the broadcast counter says {counted[day]}")
    added = [run.added for run in runs]
    if sum(added) != r.recipients or any(added[1:]):
        p.append(f"enqueue_bulk is not idempotent across restarts: rows added per run {added}")
    if sum(run.recovered for run in runs) != r.unknown:
        p.append(f"unknown rows {r.unknown} != rows recovered at start-up per run")
    return r


Progress = Callable[[str], None]


def _describe(scenario: str, run: Run, data_dir: Path) -> str:
    how = "finished" if run.done else "exited"
    if run.killed:
        how = f"killed {(run.kill_delay or 0.0) * 1000:.0f} ms after {run.after}"
    total = len(read_deliveries(data_dir / DELIVERY_LOG))
    return f"{scenario} run {run.index}: {how}; {total} deliveries so far"


def _quiet(message: str) -> None:
    pass


def kill_loop(
    data_dir: Path,
    *,
    recipients: int = 300,
    kills: int = 10,
    seed: int = DEFAULT_SEED,
    max_kill_delay_s: float = 0.05,
    fsync: bool = False,
    progress: Progress = _quiet,
    sabotage: str = "",
) -> Report:
    """Scenario 1: one broadcast, SIGKILLed `kills` times (each 0-50 ms after the run's
    first delivery, so every kill lands mid-send), then allowed to finish."""
    started = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    cap = 2 * recipients  # never binds here: kills only waste reservations, never sends
    report = Report("kill", "强杀循环 kill loop", recipients, cap)
    runs: list[Run] = []
    plan = Plan(
        data_dir, recipients, cap_send=cap, cap_broadcast=cap, fsync=fsync, sabotage=sabotage
    )
    for attempt in range(kills):
        delay = rng.uniform(0.0, max_kill_delay_s)
        run = run_child(
            plan, index=attempt, seed=seed * 1000 + attempt, kill_delay=delay, after="delivery"
        )
        runs.append(run)
        progress(_describe("kill loop", run, data_dir))
        if run.done:
            break  # the job is finished: nothing left to interrupt
    final = run_child(plan, index=len(runs), seed=seed * 1000 + 999, kill_delay=None)
    runs.append(final)
    evaluate(report, data_dir, runs, cap_must_bind=False)
    report.elapsed_s = time.monotonic() - started
    return report


def cap_loop(
    data_dir: Path,
    *,
    recipients: int = 120,
    cap: int = 50,
    restarts: int = 5,
    seed: int = DEFAULT_SEED,
    max_kill_delay_s: float = 0.05,
    fsync: bool = False,
    progress: Progress = _quiet,
    sabotage: str = "",
) -> Report:
    """Scenario 2: a broadcast larger than OUTBOX_CAP_BROADCAST on one day. Every run stays
    up like the production worker once drained (the rest deferred to the next day) and is
    killed: even runs 0-50 ms after start-up (mid-send while the cap has room, otherwise
    while deferring), odd runs 0-50 ms after they report the cap reached and idle. After
    `restarts` kills a last run finishes by itself. The remainder stays pending."""
    if cap >= recipients:
        raise ValueError("the cap scenario needs fewer cap slots than recipients")
    started = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + 1)
    report = Report("cap", "日上限 daily cap", recipients, cap)
    runs: list[Run] = []
    # The broadcast cap is the one that binds; the send cap stays out of the way.
    plan = Plan(
        data_dir,
        recipients,
        cap_send=10 * recipients,
        cap_broadcast=cap,
        fsync=fsync,
        sabotage=sabotage,
        linger=True,
    )
    for attempt in range(restarts):
        delay = rng.uniform(0.0, max_kill_delay_s)
        after = "idle" if attempt % 2 else "ready"
        run = run_child(
            plan, index=attempt, seed=seed * 1000 + 500 + attempt, kill_delay=delay, after=after
        )
        runs.append(run)
        progress(_describe("cap loop", run, data_dir))
    final = run_child(plan, index=len(runs), seed=seed * 1000 + 998, kill_delay=None)
    runs.append(final)
    evaluate(report, data_dir, runs, cap_must_bind=True)
    report.elapsed_s = time.monotonic() - started
    return report


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _ljust(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _rjust(text: str, width: int) -> str:
    return " " * (width - _width(text)) + text


METRICS: tuple[tuple[str, Callable[[Report], object]], ...] = (
    ("收件人 recipients", lambda r: r.recipients),
    ("日上限 daily cap", lambda r: r.cap),
    ("账本已发 sent", lambda r: r.sent),
    ("实际送达 delivered", lambda r: r.delivered),
    ("重复送达 duplicates", lambda r: r.duplicates),
    ("状态未知 unknown", lambda r: r.unknown),
    ("跳过 skipped", lambda r: r.skipped),
    ("失败 failed", lambda r: r.failed),
    ("待发 pending", lambda r: r.pending),
    ("超上限 cap violations", lambda r: r.cap_violations),
    ("强杀 kills", lambda r: r.kills),
    ("运行次数 runs", lambda r: r.runs),
    ("用时 time (s)", lambda r: f"{r.elapsed_s:.1f}"),
    ("结果 result", lambda r: "PASS" if r.passed else "FAIL"),
)


def format_table(reports: Sequence[Report]) -> str:
    header = ["指标 metric", *(r.label for r in reports)]
    body = [[name, *(str(get(r)) for r in reports)] for name, get in METRICS]
    widths = [max(_width(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = _ljust(cells[0], widths[0])
        rest = [_rjust(c, w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def format_problems(reports: Sequence[Report]) -> str:
    lines = []
    for r in reports:
        for problem in r.problems:
            lines.append(f"  ✗ {r.label}: {problem}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fault_inject.py",
        description="出站限流故障注入：在群发中随机强杀进程（SIGKILL），检查不重发、不超每日上限",
    )
    parser.add_argument(
        "--scenario",
        choices=["all", "kill", "cap", "mixed"],
        default="all",
        help="跑哪个场景（默认全部）",
    )
    parser.add_argument(
        "--mixed-kills", type=int, default=20, help="混合场景（回复 + 群发 + 传输故障）：强杀几次"
    )
    parser.add_argument("--kills", type=int, default=10, help="强杀场景：强杀几次（默认 10）")
    parser.add_argument("--recipients", type=int, default=300, help="强杀场景：群发人数")
    parser.add_argument("--cap", type=int, default=50, help="上限场景：OUTBOX_CAP_BROADCAST 的值")
    parser.add_argument("--cap-recipients", type=int, default=120, help="上限场景：群发人数")
    parser.add_argument("--restarts", type=int, default=5, help="上限场景：强杀并重启几次")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="随机种子")
    parser.add_argument("--max-delay-ms", type=float, default=50.0, help="就绪后最多多少毫秒强杀")
    parser.add_argument("--fsync", action="store_true", help="发送记录每行都 fsync")
    parser.add_argument(
        "--data-dir", type=Path, metavar="目录", help="数据放在这里（默认临时目录）"
    )
    parser.add_argument("--keep", action="store_true", help="保留临时数据目录")
    parser.add_argument("-v", "--verbose", action="store_true", help="打印每一次运行")
    # The child's own arguments (this script re-run by the parent).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--cap-send", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cap-broadcast", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sabotage", default="", help=argparse.SUPPRESS)
    parser.add_argument("--linger", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return asyncio.run(child_main(args))
    if not hasattr(signal, "SIGKILL"):
        print("需要 SIGKILL 信号（只能在 Linux 或 macOS 上运行）", file=sys.stderr)
        return 1
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="pond-fault-"))
    for name in ("kill", "cap", "mixed"):
        if (base / name).exists():
            print(f"{base / name} 已存在，请换一个目录", file=sys.stderr)
            return 1
    progress: Progress = (
        (lambda m: print(m, file=sys.stderr, flush=True)) if args.verbose else _quiet
    )
    delay = args.max_delay_ms / 1000.0
    started = time.monotonic()
    reports: list[Report] = []
    mixed_failed: list[str] = []
    print(f"故障注入中（随机种子 {args.seed}）…", file=sys.stderr, flush=True)
    try:
        if args.scenario in ("all", "kill"):
            reports.append(
                kill_loop(
                    base / "kill",
                    recipients=args.recipients,
                    kills=args.kills,
                    seed=args.seed,
                    max_kill_delay_s=delay,
                    fsync=args.fsync,
                    progress=progress,
                    sabotage=args.sabotage,
                )
            )
        if args.scenario in ("all", "cap"):
            reports.append(
                cap_loop(
                    base / "cap",
                    recipients=args.cap_recipients,
                    cap=args.cap,
                    restarts=args.restarts,
                    seed=args.seed,
                    max_kill_delay_s=delay,
                    fsync=args.fsync,
                    progress=progress,
                    sabotage=args.sabotage,
                )
            )
        if args.scenario in ("all", "mixed"):
            import fault_mixed  # replies + composite broadcast + transport faults

            mixed = fault_mixed.mixed_loop(base / "mixed", kills=args.mixed_kills, seed=args.seed)
            print(fault_mixed.format_report(mixed))
            if not mixed.passed:
                mixed_failed.append(mixed.label)
    except (ChildError, ValueError, RuntimeError) as error:
        print(f"测试装置出错：{error}", file=sys.stderr)
        print(f"数据保留在：{base}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    passed = all(r.passed for r in reports) and not mixed_failed
    if reports:
        print(format_table(reports))
    problems = format_problems(reports)
    if problems:
        print(problems)
    verdict = "通过" if passed else "未通过"
    print(f"{verdict}（用时 {elapsed:.1f} 秒，随机种子 {args.seed}）")
    if passed and not args.data_dir and not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"数据目录：{base}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
