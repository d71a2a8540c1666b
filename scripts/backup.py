"""数据备份与恢复 / backups of the bot's data dir, and their restore.

    python3 scripts/backup.py list                    列出备份（最新的在前）
    python3 scripts/backup.py now                     立即备份一次（机器人运行时也可以）
    python3 scripts/backup.py check                   检查数据文件（完整性检查）
    python3 scripts/backup.py restore NAME --yes      用备份 NAME 替换当前数据（先停止机器人）

The running bot backs up by itself every BACKUP_EVERY_H hours and keeps BACKUP_KEEP
backups (config.example.env). A restore refuses while a bot runs on the data dir, checks
the backup first, and moves the replaced files to <data dir>/before-restore-<time>/
(nothing is deleted). Same data dir rules as the bot: BOT_DATA_DIR from .env, data/console
when the bot would start the console simulator, or --data-dir.
Exit codes: 0 done, 1 refused or failed, 2 configuration error.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    import _env  # scripts/ is sys.path[0] when run as a program

    _env.bootstrap()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import TextIO  # noqa: E402

import bot  # noqa: E402
from pond import Settings  # noqa: E402
from pond.store import AtomicJSONStorage, StoreError, integrity  # noqa: E402
from pond.store import backup as backups  # noqa: E402
from pond.store import lock as instance_lock  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="backup.py",
        description="数据备份与恢复：列出、立即备份、检查、恢复",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("action", choices=["list", "now", "check", "restore"], help="要做什么")
    parser.add_argument("name", nargs="?", default="", help="restore：备份名（见 list）")
    parser.add_argument("--yes", action="store_true", help="restore：确认替换当前数据")
    parser.add_argument("--json", action="store_true", help="list：以 JSON 输出")
    parser.add_argument("--data-dir", metavar="DIR", help="数据目录（默认按 .env 的 BOT_DATA_DIR）")
    parser.add_argument("--env-file", metavar="FILE", default=str(ROOT / ".env"))
    parser.add_argument("--console", action="store_true", help="控制台模拟器的数据（data/console）")
    return parser.parse_args(argv)


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file the bot uses (None for PostgreSQL)."""
    url = settings.bot.database_url
    if not url:
        return settings.bot.data_dir / "pond.sqlite3"
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    return Path(database)


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def run(argv: list[str], *, settings: Settings | None = None, out: TextIO | None = None) -> int:
    args = parse_args(argv)
    stream = out or sys.stdout
    settings = settings or bot.tool_settings(args.data_dir, args.env_file, args.console)
    data_dir = settings.bot.data_dir
    root = bot.backup_root(settings)
    db = sqlite_path(settings)
    if args.action == "list":
        infos = backups.list_backups(root)
        if args.json:
            print(json.dumps(backups.info_lines(infos), ensure_ascii=False, indent=2), file=stream)
            return 0
        if not infos:
            print(f"{root} 里还没有备份", file=stream)
            return 0
        print(f"{root} 里的备份（最新的在前）：", file=stream)
        for info in infos:
            tables = "、".join(info.tables) or "无数据表"
            print(f"  {info.name}  {info.created_at}  {_mb(info.size)}  {tables}", file=stream)
        return 0
    if args.action == "now":
        path = backups.make_backup(
            data_dir, db, root, datetime.now(settings.bot.timezone), settings.backup.keep
        )
        print(f"已备份到 {path}（保留最新的 {settings.backup.keep} 份）", file=stream)
        return 0
    if args.action == "check":
        started = time.monotonic()
        if db is not None:
            integrity.check_sqlite_file(data_dir, db)
        for doc in sorted((data_dir / "docs").glob("*.json")):
            AtomicJSONStorage(doc).read()
        took = time.monotonic() - started
        print(f"数据文件完好（检查用时 {took:.2f} 秒）", file=stream)
        return 0
    # restore
    if not args.name:
        print("请给出要恢复的备份名（python3 scripts/backup.py list 查看）", file=sys.stderr)
        return 2
    pid = instance_lock.holder(data_dir)
    if pid is not None:
        print(
            f"机器人正在运行（pid {pid or '未知'}），不能恢复：请先停止机器人再恢复。",
            file=sys.stderr,
        )
        return 1
    if not args.yes:
        print(
            f"将用备份 {args.name} 替换 {data_dir} 的数据库和文档（当前文件会移到 "
            f"{data_dir}/before-restore-时间/ 保留）。确认请加 --yes 再运行一次。",
            file=stream,
        )
        return 1
    aside = backups.restore(data_dir, root, args.name, now=datetime.now(settings.bot.timezone))
    print(f"已恢复备份 {args.name}。原来的文件保存在 {aside}。现在可以启动机器人了。", file=stream)
    return 0


def main(argv: list[str]) -> int:
    os.umask(0o077)  # backups hold customer data: owner-only, like the data dir
    try:
        return run(argv)
    except bot.STARTUP_ERRORS as error:
        print(bot.explain(error), file=sys.stderr)
        return 1 if isinstance(error, StoreError) else 2
    except OSError as error:
        print(f"无法完成：{error.strerror or error}（{error.filename or ''}）", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
