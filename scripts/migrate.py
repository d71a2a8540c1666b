"""升级数据库结构 / bring the database schema to this release (Alembic, SQLite and PostgreSQL).

    python3 scripts/migrate.py            升级到当前版本（先停止所有机器人进程）
    python3 scripts/migrate.py --check    只查看数据库的结构版本和需要的版本

The bot refuses to start on a database behind the code and names this command. It runs
under a lock: on SQLite the data dir's lock (refused while a bot runs there) and a backup
first (BACKUP_DIR, as scripts/backup.py now); on PostgreSQL an advisory lock, so two
migrations cannot interleave. A database made by the release before migrations is
recognised and upgraded keeping every row (on PostgreSQL its documents, kept in files of the
data dir then, are imported into the documents table); an empty PostgreSQL database gets
every table (the migration step before fleet workers start). Same data dir rules as the bot.
Exit codes: 0 done (or nothing to do), 1 refused or failed, 2 configuration error.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    import _env  # scripts/ is sys.path[0] when run as a program

    _env.bootstrap()

import argparse  # noqa: E402
import os  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import TextIO  # noqa: E402

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import URL, make_url  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402

import bot  # noqa: E402
from pond.store import InstanceLock, StoreError, integrity, migrate  # noqa: E402
from pond.store import backup as backups  # noqa: E402
from pond.store.postgres import import_doc_files  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="migrate.py",
        description="升级数据库结构到这个版本的 pond 需要的版本（数据都会保留）",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--check", action="store_true", help="只查看版本，不改动数据库")
    parser.add_argument(
        "--data-dir", metavar="目录", help="数据目录（默认按 .env 的 BOT_DATA_DIR）"
    )
    parser.add_argument("--env-file", metavar="文件", default=str(ROOT / ".env"))
    parser.add_argument("--console", action="store_true", help="控制台模拟器的数据（data/console）")
    return parser.parse_args(argv)


def run(argv: list[str], *, out: TextIO | None = None) -> int:
    args = parse_args(argv)
    stream = out or sys.stdout
    settings = bot.tool_settings(args.data_dir, args.env_file, args.console)
    data_dir = settings.bot.data_dir
    url: URL = (
        make_url(settings.bot.database_url)
        if settings.bot.database_url
        else URL.create("sqlite", database=str(data_dir / "pond.sqlite3"))
    )
    sqlite_file = Path(url.database or "") if url.get_backend_name() == "sqlite" else None
    if sqlite_file is not None and not sqlite_file.exists():
        print(f"还没有数据库（{sqlite_file}）：第一次启动时会建好，不需要迁移。", file=stream)
        return 0
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            version, has_tables = migrate.version_of(conn)
        shown = version or (f"{migrate.BASELINE}（迁移之前的版本）" if has_tables else "空数据库")
        if args.check:
            state = "已是最新" if version == migrate.HEAD else f"需要运行 {migrate.COMMAND}"
            print(f"数据库结构版本：{shown}；需要：{migrate.HEAD}（{state}）", file=stream)
            return 0 if version == migrate.HEAD else 1
        if version == migrate.HEAD:
            print(f"数据库结构已是最新版本（{migrate.HEAD}），不需要迁移。", file=stream)
            return 0
        if sqlite_file is None:
            before, applied = migrate.upgrade(engine)
            # The release before kept a PostgreSQL store's documents in files.
            imported = import_doc_files(data_dir, engine)
            if imported:
                names = "、".join(imported)
                print(f"已把数据目录里的文档导入数据库：{names}（文件保留原处）", file=stream)
        else:
            with InstanceLock(data_dir):  # refused while a bot runs on this data dir
                integrity.check_sqlite_file(data_dir, sqlite_file)
                saved = backups.make_backup(
                    data_dir,
                    sqlite_file,
                    bot.backup_root(settings),
                    datetime.now(settings.bot.timezone),
                    settings.backup.keep,
                )
                print(f"迁移前已备份到 {saved}", file=stream)
                before, applied = migrate.upgrade(engine)
    finally:
        engine.dispose()
    steps = "、".join(applied) or "无"
    print(
        f"数据库结构已从 {before or '空数据库'} 升级到 {migrate.HEAD}（执行的迁移：{steps}）。"
        "现在可以启动机器人了。",
        file=stream,
    )
    return 0


def main(argv: list[str]) -> int:
    os.umask(0o077)  # the backup holds customer data: owner-only, like the data dir
    try:
        return run(argv)
    except bot.STARTUP_ERRORS as error:
        print(bot.explain(error), file=sys.stderr)
        return 1 if isinstance(error, StoreError) else 2
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:300]
        print(f"迁移失败，数据库没有改动：{reason}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"无法完成：{error.strerror or error}（{error.filename or ''}）", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
