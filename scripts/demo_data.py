"""演示数据：一家小茶铺真实感的一个月（几个渠道、几个群、双11 群发、跟进、订单），
马上就能试运营报表。

    python3 scripts/demo_data.py                       写到 data/demo，到今天为止的 30 天
    python3 scripts/demo_data.py --end 2026-11-30      11 月整月
    python3 scripts/demo_data.py --data-dir /tmp/d --contacts 100000 --days 30
    python3 scripts/report.py --data-dir data/demo     然后生成报表

数据目录里已经有数据库时拒绝写入（演示数据绝不混进真实数据）。"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    import _env  # scripts/ is sys.path[0] when run as a program

    _env.bootstrap()

import argparse  # noqa: E402
import time  # noqa: E402
from datetime import date, datetime  # noqa: E402

import bot  # noqa: E402
from plugins._analytics import demo, keywords  # noqa: E402
from pond import ConfigError  # noqa: E402
from pond.store import Store  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="demo_data.py",
        description="生成一个月的演示数据，用来试运营报表",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir", metavar="目录", default=str(ROOT / "data" / "demo"), help="写到哪里"
    )
    parser.add_argument("--days", type=int, default=30, help="天数（默认 30）")
    parser.add_argument("--end", metavar="YYYY-MM-DD", help="最后一天（默认今天）")
    parser.add_argument("--contacts", type=int, default=3000, help="客户数（默认 3000）")
    parser.add_argument("--seed", type=int, default=7, help="随机种子（同一个种子数据相同）")
    parser.add_argument(
        "--env-file", metavar="文件", default=str(ROOT / ".env"), help="配置文件（默认 .env）"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        settings = bot.build_settings(args)
    except ConfigError as error:
        print(bot.explain(error), file=sys.stderr)
        return 2
    tz = settings.bot.timezone
    try:
        end = date.fromisoformat(args.end) if args.end else datetime.now(tz).date()
    except ValueError:
        print(f"--end「{args.end}」不是有效日期（YYYY-MM-DD）", file=sys.stderr)
        return 2
    if not 1 <= args.days <= 400 or args.contacts < 1:
        print("--days 应在 1~400 之间，--contacts 至少 1", file=sys.stderr)
        return 2
    folder = Path(args.data_dir)
    if (folder / "pond.sqlite3").exists():
        print(
            f"{folder} 里已经有数据库：演示数据只写进空目录（换一个 --data-dir）", file=sys.stderr
        )
        return 2
    persona = settings.bot.persona_dir / "analytics"
    segmenter = keywords.Segmenter(
        keywords.load_words(persona / "stopwords.txt"), keywords.load_words(persona / "words.txt")
    )
    started = time.perf_counter()
    with Store(folder) as store:
        result = demo.generate(
            store,
            end=end,
            tz=tz,
            days=args.days,
            contacts=args.contacts,
            seed=args.seed,
            segmenter=segmenter,
        )
    took = time.perf_counter() - started
    print(
        f"演示数据已写入 {folder}：{result.contacts} 位客户，{result.events} 条事件，"
        f"{result.orders} 笔订单（{took:.1f} 秒）"
    )
    print(f"生成报表：python3 scripts/report.py --data-dir {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
