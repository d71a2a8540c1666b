"""Report benchmark: `python3 scripts/bench_report.py [--contacts N] [--smoke] [--profile]`.

Generates the demo month (plugins/_analytics/demo.py) for N contacts into a data dir, then times
the operations report over it. Every figure is measured in this run, and the computation is
also printed as a ratio against a baseline measured in the same run (machines are noisy;
ratios travel better than seconds):

- baseline: one plain full scan of the events table through SQLAlchemy
  (`SELECT ts, kind, contact_id, room_id FROM events`, every row materialised, ts parsed by
  the column type), the least any report over all events must do;
- compute: open the store and `build_report` for the whole generated month, as
  scripts/report.py does (min and median of --repeat runs);
- write: `write_report` (HTML with charts + CSV files), timed apart from the computation;
- whole process: scripts/report.py in a fresh interpreter, imports included.

Issue 12's goal: a report for 100k contacts / 1M events in under 60 s (compute + write).
Targets are goals to report against, never test assertions. A --data-dir that already holds a
database is reused as it is (generate once with --keep, then time the report again)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import ROOT, ensure_venv

if __name__ == "__main__":
    ensure_venv()

import argparse
import cProfile
import dataclasses
import io
import os
import pstats
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

sys.path.insert(0, str(ROOT))

import sqlalchemy as sa

import bot
from plugins._analytics import demo, keywords
from plugins._analytics.build import build_report, open_store
from plugins._analytics.data import Source
from plugins._analytics.demo_month import Writer
from plugins._analytics.metrics import Report
from plugins._analytics.render import write_report
from plugins.analytics import AnalyticsConfig
from pond import Settings
from pond.store import Store

TARGET_S = 60.0
DEFAULT_END = date(2026, 11, 30)  # a fixed month with the 双11 spike in it: same data every run
T = TypeVar("T")


def settings_for(data_dir: Path, env_file: str) -> Settings:
    settings = bot.tool_settings(str(data_dir), env_file)
    # The benchmark reads only the data dir it generated, never a configured database.
    return dataclasses.replace(settings, bot=dataclasses.replace(settings.bot, database_url=""))


def timed(job: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = job()
    return value, time.perf_counter() - start


def generate(
    settings: Settings, data_dir: Path, contacts: int, days: int, end: date, events_target: int
) -> dict[str, Any]:
    persona = settings.bot.persona_dir / "analytics"
    segmenter = keywords.Segmenter(
        keywords.load_words(persona / "stopwords.txt"), keywords.load_words(persona / "words.txt")
    )
    start = time.perf_counter()
    with Store(data_dir) as store:
        result = demo.generate(
            store,
            end=end,
            tz=settings.bot.timezone,
            days=days,
            contacts=contacts,
            seed=7,
            segmenter=segmenter,
        )
        extra = max(0, events_target - result.events)
        if extra:
            top_up(store, extra, end, days, settings)
    return {
        "contacts": result.contacts,
        "demo_events": result.events,
        "extra_events": extra,
        "seconds": time.perf_counter() - start,
    }


def top_up(store: Store, n: int, end: date, days: int, settings: Settings) -> None:
    """More private in.message events from the demo's friends, spread over the month, in the
    shape and through the writer the demo uses (so the report reads them like the rest)."""
    tz = settings.bot.timezone
    midnight = datetime.min.time()
    start_ts = datetime.combine(end - timedelta(days=days - 1), midnight, tz).timestamp()
    span = datetime.combine(end + timedelta(days=1), midnight, tz).timestamp() - start_ts
    customers = Source(store.sql).customers.c
    with store.sql.engine.connect() as conn:
        friends = sa.select(customers.id).where(customers.is_friend.is_(True))
        ids = list(conn.execute(friends).scalars())
    rng = random.Random(11)
    writer = Writer(store)
    for _ in range(n):
        writer.event(
            "in.message",
            start_ts + rng.random() * span,
            contact_id=rng.choice(ids),
            stale=False,
            type="text",
            length=rng.randrange(4, 30),
            mentions_self=False,
        )
    writer.flush()


def counts(settings: Settings) -> tuple[int, int]:
    """(events, contacts) in the data dir, whatever generated them."""
    sql = open_store(settings)
    try:
        source = Source(sql)
        with sql.engine.connect() as conn:
            events = conn.execute(sa.select(sa.func.count()).select_from(source.events))
            contacts = conn.execute(sa.select(sa.func.count()).select_from(source.customers))
            return int(events.scalar_one()), int(contacts.scalar_one())
    finally:
        sql.close()


def full_scan(settings: Settings) -> int:
    sql = open_store(settings)
    try:
        t = sql.events_table.c
        with sql.engine.connect() as conn:
            rows = conn.execute(sa.select(t.ts, t.kind, t.contact_id, t.room_id)).all()
        return len(rows)
    finally:
        sql.close()


def compute(settings: Settings, since: date, until: date, now: datetime) -> Report:
    config = settings.plugin_config("analytics", AnalyticsConfig)
    sql = open_store(settings)
    try:
        return build_report(
            settings,
            Source(sql),
            since=since.isoformat(),
            until=until.isoformat(),
            conversion_sources=config.conversion,
            now=now,
        )
    finally:
        sql.close()


# report.py run as __main__ in a fresh interpreter that then prints its own peak RSS: VmHWM
# (getrusage's maxrss would keep the high-water mark of the forked copy of this process).
PROCESS = """
import os, runpy, sys
sys.argv = {argv!r}
sys.path[0] = os.path.dirname(sys.argv[0])  # as when the script is run as a program
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as done:
    if done.code:
        raise
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) / 1024)
"""


def whole_process(
    data_dir: Path, since: date, until: date, out: Path, env_file: str
) -> tuple[float, float]:
    """scripts/report.py as an operator runs it, interpreter start and imports included:
    (wall seconds, peak RSS in MB)."""
    argv = [
        str(ROOT / "scripts" / "report.py"),
        *("--data-dir", str(data_dir), "--from", since.isoformat(), "--to", until.isoformat()),
        *("--out", str(out), "--env-file", env_file),
    ]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROCESS.format(argv=argv)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "POND_NO_VENV": "1", "DATABASE_URL": ""},
    )
    took = time.perf_counter() - start
    return took, float(done.stdout.strip().splitlines()[-1])


def profile(job: Callable[[], object]) -> str:
    profiler = cProfile.Profile()
    profiler.runcall(job)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("cumulative").print_stats(15)
    stats.sort_stats("tottime").print_stats(10)
    return re.sub(r"\n{3,}", "\n\n", text.getvalue()).strip()


def summary(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="bench_report.py",
        description="报表性能基准：生成演示月数据，给运营报表计时（和同一次运行里的全表扫描对比）",
    )
    parser.add_argument("--contacts", type=int, default=100_000, help="客户数（默认 10 万）")
    parser.add_argument("--days", type=int, default=30, help="天数（默认 30）")
    parser.add_argument(
        "--end", metavar="YYYY-MM-DD", default=DEFAULT_END.isoformat(), help="最后一天"
    )
    parser.add_argument(
        "--events-target",
        type=int,
        default=None,
        help="用私聊消息把事件补到这么多条（10 万客户和 --smoke 时默认每人 10 条，其余不补）",
    )
    parser.add_argument("--data-dir", metavar="目录", help="默认用临时目录，结束后删除")
    parser.add_argument("--keep", action="store_true", help="保留临时数据目录")
    parser.add_argument("--repeat", type=int, default=3, help="报表计时几次（默认 3）")
    parser.add_argument("--smoke", action="store_true", help="2000 个客户：只检查能跑通")
    parser.add_argument("--profile", action="store_true", help="用 cProfile 分析一次计算和写出")
    parser.add_argument(
        "--env-file", metavar="文件", default=str(ROOT / ".env"), help="配置文件（默认 .env）"
    )
    args = parser.parse_args()
    if args.smoke:
        args.contacts = 2000
    if args.contacts < 1 or not 1 <= args.days <= 400:
        parser.error("--contacts must be at least 1 and --days 1 to 400")
    if args.events_target is None:
        # 10 a contact is issue 12's ratio (100k contacts / 1M events); --smoke tops up too so
        # the test covers that path.
        args.events_target = args.contacts * 10 if args.smoke or args.contacts == 100_000 else 0
    repeat = max(1, args.repeat)
    end = date.fromisoformat(args.end)
    since = end - timedelta(days=args.days - 1)
    now = datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
    size = "smoke" if args.smoke else f"{args.contacts:,} contacts"
    print(
        f"pond 报表基准测试（{size}，截至 {end} 的 {args.days} 天），"
        f"Python {sys.version.split()[0]}，{os.cpu_count()} 个 CPU",
        flush=True,
    )

    owned = args.data_dir is None
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="pond-bench-report-")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        settings = settings_for(data_dir, args.env_file)
        if (data_dir / "pond.sqlite3").exists():
            print(f"  沿用 {data_dir} 里的数据库（不重新生成）", flush=True)
            gen: dict[str, Any] | None = None
        else:
            gen = generate(settings, data_dir, args.contacts, args.days, end, args.events_target)
            print(
                f"  已生成：{gen['contacts']:,} 位客户，{gen['demo_events']:,} 条演示事件"
                f" + {gen['extra_events']:,} 条补充的 in.message，用时 {gen['seconds']:.1f} 秒",
                flush=True,
            )
        events, contacts = counts(settings)

        scans, computes, writes = [], [], []
        out = data_dir / "reports" / "bench"
        report: Report | None = None
        for i in range(repeat):
            scanned, took = timed(lambda: full_scan(settings))
            assert scanned == events, (scanned, events)
            scans.append(took)
            report, took = timed(lambda: compute(settings, since, end, now))
            computes.append(took)
            written, took = timed(lambda r=report: write_report(r, out))
            writes.append(took)
            print(
                f"  第 {i + 1}/{repeat} 轮：基线全表扫描 {scans[-1]:.2f} 秒，"
                f"计算 {computes[-1]:.2f} 秒，写出 {writes[-1]:.2f} 秒",
                flush=True,
            )
        assert report is not None and report.has_data, "the report saw no data"
        csv_files = len(written.csv)
        process, rss = whole_process(
            data_dir, since, end, data_dir / "reports" / "process", args.env_file
        )
        print(f"  整个进程（scripts/report.py）：{process:.2f} 秒，{rss:.0f} MB", flush=True)

        scan_min, scan_med = summary(scans)
        comp_min, comp_med = summary(computes)
        write_min, write_med = summary(writes)
        total = comp_med + write_med
        rows: list[tuple[str, str]] = [
            ("events (all kinds)", f"{events:,}"),
            ("contacts", f"{contacts:,}"),
            ("report days", f"{args.days} ({since} .. {end})"),
        ]
        if gen is not None:
            rows += [
                ("generation", f"{gen['seconds']:.1f} s"),
                ("generation events/s", f"{events / gen['seconds']:,.0f} events/s"),
            ]
        rows += [
            ("baseline full scan (min / median)", f"{scan_min:.2f} / {scan_med:.2f} s"),
            ("baseline rows/s", f"{events / scan_min:,.0f} rows/s"),
            ("report compute (min / median)", f"{comp_min:.2f} / {comp_med:.2f} s"),
            ("report rows/s (events / compute min)", f"{events / comp_min:,.0f} rows/s"),
            ("report / baseline (min / min)", f"{comp_min / scan_min:.2f} x"),
            ("write HTML + CSV (min / median)", f"{write_min:.2f} / {write_med:.2f} s"),
            (f"report total, compute + write (median, {csv_files} CSV)", f"{total:.2f} s"),
            ("whole process, scripts/report.py", f"{process:.2f} s"),
            ("whole process peak RSS", f"{rss:.0f} MB"),
        ]
        print(f"\npond report benchmark, {datetime.now():%Y-%m-%d %H:%M}, {size}\n")
        print("| figure | value |\n|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
        if args.profile:
            print("\n一次计算加写出的性能剖析（cProfile）：", flush=True)
            print(profile(lambda: write_report(compute(settings, since, end, now), out)))
        met = total < TARGET_S
        print(
            f"\n目标：< {TARGET_S:.0f} 秒（{contacts:,} 位客户 / {events:,} 条事件，计算+写出，"
            f"中位数 {total:.1f} 秒）：{'达到' if met else '未达到'}"
        )
        return 0
    finally:
        if owned and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        elif owned:
            print(f"数据保留在 {data_dir}")


if __name__ == "__main__":
    sys.exit(main())
