"""运营报表：一个可离线打开的 HTML 文件（含图表），加每张表一个 CSV。

    python3 scripts/report.py                                  最近 30 天
    python3 scripts/report.py --from 2026-11-01 --to 2026-11-30
    python3 scripts/report.py --room 小鱼塘茶友演示群 --channel 直播间
    python3 scripts/report.py --data-dir data/demo              演示数据（先运行 demo_data.py）
    python3 scripts/report.py --import-orders 订单.csv          导入订单（订单号、客户、时间、金额）

写到 <数据目录>/reports/<开始>_<结束>[_筛选]/report.html 和 csv/*.csv（或 --out 目录），并打印路径。
只读机器人的数据（机器人运行时也可以用）。群和渠道可以写 id 或名字，可以写多次或用逗号分隔。
选的日期和筛选里没有任何记录时会提醒（报表照样写出）。
退出码：0 已生成，2 请求有误（日期、筛选、配置）。"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    import _env  # scripts/ is sys.path[0] when run as a program

    _env.bootstrap()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sqlite3  # noqa: E402
import time  # noqa: E402

from sqlalchemy.exc import SQLAlchemyError  # noqa: E402

import bot  # noqa: E402
from plugins._analytics import orders  # noqa: E402
from plugins._analytics.build import ReportError, build_report, open_store  # noqa: E402
from plugins._analytics.data import Source  # noqa: E402
from plugins._analytics.metrics import Report  # noqa: E402
from plugins._analytics.render import write_report  # noqa: E402
from plugins.analytics import AnalyticsConfig  # noqa: E402
from pond import ConfigError, Settings  # noqa: E402
from pond.customers import CustomerBook  # noqa: E402
from pond.store import Store, StoreError  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="report.py",
        description="pond 运营报表：HTML（含图表，可离线打开）+ 每张表一个 CSV",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--from", dest="since", metavar="YYYY-MM-DD", help="开始日期（含）")
    parser.add_argument("--to", dest="until", metavar="YYYY-MM-DD", help="结束日期（含）")
    parser.add_argument("--room", action="append", default=[], help="只看这些群（id 或群名）")
    parser.add_argument("--channel", action="append", default=[], help="只看这些渠道（代码或名称）")
    parser.add_argument("--out", metavar="目录", help="输出目录")
    parser.add_argument(
        "--import-orders", metavar="CSV", help="先导入订单 CSV（按订单号去重，可重复导入）"
    )
    parser.add_argument("--data-dir", metavar="目录", help="数据目录（代替 BOT_DATA_DIR）")
    parser.add_argument(
        "--env-file", metavar="文件", default=str(ROOT / ".env"), help="配置文件（默认 .env）"
    )
    parser.add_argument(
        "--console", action="store_true", help="读控制台模拟器的数据（data/console）"
    )
    parser.add_argument(
        "--json", action="store_true", help="输出一行 JSON：网页、CSV 路径和核心指标（给机器人用）"
    )
    return parser.parse_args(argv)


def out_dir(settings: Settings, args: argparse.Namespace, since: str, until: str) -> Path:
    if args.out:
        return Path(args.out)
    name = f"{since}_{until}"
    if args.room or args.channel:
        # Filters in the folder name would be long and may hold Chinese: a short digest.
        digest = hashlib.sha1("|".join([*args.room, "#", *args.channel]).encode()).hexdigest()
        name += f"_f{digest[:6]}"
    return Path(settings.bot.data_dir) / "reports" / name


def import_orders(settings: Settings, path: Path) -> int:
    """Orders go into the bot's database (a short write; SQLite waits for a running bot's
    transaction). Unmatched rows are listed by line and skipped, never guessed."""
    try:
        store = Store(settings.bot.data_dir, settings.bot.database_url or None)
    except StoreError as error:
        print(bot.explain(error), file=sys.stderr)
        return 2
    with store:
        table = orders.define_table(store.sql.metadata)
        book = CustomerBook(store.sql.engine, store.sql.metadata)
        store.sql.create_all()
        try:
            result = orders.import_csv(
                store.sql.engine, table, book.customers, path, settings.bot.timezone
            )
        except (OSError, ValueError) as error:
            print(f"订单没有导入：{error}", file=sys.stderr)
            return 2
    print(
        f"订单导入：新增 {result.added} 笔，已有 {result.unchanged} 笔，"
        f"有问题 {result.error_count} 行"
    )
    for line in result.errors:
        print(f"  {line}", file=sys.stderr)
    return 0


# Headline numbers that count what happened inside the chosen dates (not the friend total).
_IN_RANGE = (
    "new_friends",
    "churned",
    "optouts",
    "active_contacts",
    "inbound_private",
    "inbound_rooms",
    "converted",
    "sent",
)


def in_range(headline: dict[str, object]) -> bool:
    return any(headline.get(name) for name in _IN_RANGE)


def empty_warning(settings: Settings, args: argparse.Namespace, report: Report) -> str:
    """The data has events, just none in the chosen dates and filters: say so, and where
    the tool looked, instead of a silent all-zero report."""
    chosen = [f"{report.scope.since} 到 {report.scope.until}"]
    if args.room:
        chosen.append("群 " + "、".join(args.room))
    if args.channel:
        chosen.append("渠道 " + "、".join(args.channel))
    return (
        f"注意：{'，'.join(chosen)} 没有任何记录（新增好友、消息、发送、成交都是 0），"
        f"报表里全是 0。读的是 {settings.bot.data_dir} 的数据："
        "请检查日期和筛选条件，或用 --data-dir 选对数据目录（演示数据在 data/demo）。"
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        settings = bot.tool_settings(args.data_dir, args.env_file, args.console)
        config = settings.plugin_config("analytics", AnalyticsConfig)
    except ConfigError as error:
        print(bot.explain(error), file=sys.stderr)
        return 2
    if args.import_orders:
        code = import_orders(settings, Path(args.import_orders))
        if code:
            return code
    started = time.perf_counter()
    sql = open_store(settings)
    try:
        report = build_report(
            settings,
            Source(sql),
            since=args.since,
            until=args.until,
            rooms=args.room,
            channels=args.channel,
            conversion_sources=config.conversion,
        )
    except ReportError as error:
        print(f"报表参数有误：{error}", file=sys.stderr)
        return 2
    except (SQLAlchemyError, sqlite3.DatabaseError) as error:
        where = sql.sqlite_path or settings.bot.database_url
        print(f"数据文件读不了（{where}）：{error}", file=sys.stderr)
        return 2
    finally:
        sql.close()
    folder = out_dir(settings, args, str(report.scope.since), str(report.scope.until))
    written = write_report(report, folder)
    took = time.perf_counter() - started
    if args.json:
        folder_csv = written.html.parent / "csv"
        print(json.dumps({"html": str(written.html), "csv": str(folder_csv), **report.headline}))
        return 0
    if not report.has_data:
        print("这个数据目录还没有数据：报表里只有一条说明。", file=sys.stderr)
    elif not in_range(report.headline):
        print(empty_warning(settings, args, report), file=sys.stderr)
    print(f"报表已生成（{took:.1f} 秒）：{written.html}")
    print(f"CSV（{len(written.csv)} 个文件）：{written.html.parent / 'csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
