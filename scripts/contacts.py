"""客户资料命令行：在终端里处理客户资料，用的是机器人的数据目录。

    python3 scripts/contacts.py export 客户id [--format json|csv] [--out 文件]
                                                  导出一位客户的全部数据（个人信息查阅/复制请求）
    python3 scripts/contacts.py delete 客户id --yes 删除一位客户的全部数据（个人信息删除请求）
    python3 scripts/contacts.py import 文件.csv   导入/更新客户表（坏行报告行号，其余照常导入）
    python3 scripts/contacts.py export-book 文件.csv
                                                  导出整个客户表（UTF-8 带 BOM，Excel 直接打开）
    python3 scripts/contacts.py add-friends 文件.csv
                                                  加入批量加好友队列（需要「同意来源」列）
    python3 scripts/contacts.py purge-inactive [--days 天数]
                                                  立即清理长期不活跃客户的消息衍生数据

CSV 表头可以用英文列名（id, name, alias, channel, stage, tags, notes, consent_source,
consent_at, first_seen, is_friend, opted_out），也可以用 persona/friends/csv.toml 里的中文列名。
Excel 存成 GBK 或 UTF-8 的文件都能读。

这里从不发送微信消息（批量加好友由运行中的机器人按节奏执行）。机器人和本工具共用数据目录：
导入和删除最好在机器人停止时做，机器人运行时请用管理员聊天命令（导入客户、删除客户……），
它的缓存才会一致。每次导出和删除都记进审计日志（不含个人信息），来源 "cli"。
退出码：0 完成，1 被拒绝或有行失败，2 没找到或配置错误。
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    import _env  # scripts/ is sys.path[0] when run as a program

    _env.bootstrap()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import getpass  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import bot  # noqa: E402
from plugins import friends  # noqa: E402
from plugins._friends import adds, csvio  # noqa: E402
from plugins._friends.data import DataError  # noqa: E402
from plugins._friends.state import Ctx  # noqa: E402
from pond import App, ConfigError, PersonaError, Settings, StartupError, rights  # noqa: E402
from pond.store import StoreError  # noqa: E402
from pond.store import lock as instance_lock  # noqa: E402
from pond.transports.offline import OfflineTransport  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="contacts.py",
        description="客户资料：导出、删除、CSV 导入导出、批量加好友队列。本工具从不发送消息。",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "action",
        choices=["export", "delete", "import", "export-book", "add-friends", "purge-inactive"],
        help="要做什么（见下面的说明）",
    )
    parser.add_argument(
        "target", nargs="?", default="", metavar="对象", help="联系人 id 或 CSV 文件"
    )
    parser.add_argument(
        "--format", choices=["json", "csv"], default="json", help="export：导出格式（默认 json）"
    )
    parser.add_argument("--out", metavar="文件", help="export：写到哪里")
    parser.add_argument("--yes", action="store_true", help="delete：确认删除")
    parser.add_argument("--days", type=float, metavar="天", help="purge-inactive：这次用的保留天数")
    parser.add_argument("--data-dir", metavar="目录", help="数据目录（代替 BOT_DATA_DIR）")
    parser.add_argument(
        "--env-file", metavar="文件", default=str(ROOT / ".env"), help="配置文件（默认 .env）"
    )
    parser.add_argument(
        "--console", action="store_true", help="读控制台模拟器的数据（data/console）"
    )
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace) -> Settings:
    return bot.tool_settings(args.data_dir, args.env_file, args.console)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


# What the counts of an export, erasure or purge are called (pond.rights' keys).
COUNT_NAMES = {
    "customer": "客户资料",
    "contacts": "位客户",
    "tags": "个标签",
    "events": "条事件",
    "deliveries": "条发送记录",
    "journal": "条收发日志",
    "records": "条插件记录",
    "queued_actions": "个待发送动作",
    "files": "个文件",
}


def counts(found: dict[str, int]) -> str:
    """{"tags": 2, "events": 5} -> "2 个标签、5 条事件" ("无" when empty)."""
    parts = [f"{n} {COUNT_NAMES.get(kind, kind)}" for kind, n in found.items() if n]
    return "、".join(parts) or "无"


def _report(report: csvio.Report, label: str) -> int:
    for line, reason in report.warnings:
        print(f"{label} 第 {line} 行：提示：{reason}")
    for line, reason in report.errors:
        print(f"{label} 第 {line} 行：未导入：{reason}")
    print(
        f"共 {report.rows} 行，导入 {report.imported} 行（新客户 {report.created} 位），"
        f"出错 {len(report.errors)} 行"
    )
    return 1 if report.errors else 0


async def act(app: App, args: argparse.Namespace) -> int:
    ctx: Ctx = app.context("friends")
    # The App is not started (nothing may be sent): the plugin's state is opened here.
    app.plugin_states["friends"] = st = friends.open_state(ctx)
    who = f"cli:{_user()}"
    if args.action in ("export", "delete"):
        if not args.target:
            print("需要联系人 id", file=sys.stderr)
            return 2
        data = ctx.rights.export_contact(args.target, by=who, origin="cli")
        if rights.is_empty(data):
            print(f"没有找到 {args.target} 的任何数据", file=sys.stderr)
            return 2
    if args.action == "export":
        if args.out:
            path = Path(args.out)
            text = (
                rights.to_csv(data)
                if args.format == "csv"
                else json.dumps(data, ensure_ascii=False, indent=2)
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8-sig" if args.format == "csv" else "utf-8") as f:
                f.write(text)
        else:
            path = ctx.rights.write_export(data, st.config.exports_dir, args.format)
        print(f"已导出：{path}（{counts(rights.summary(data))}）")
        print("文件含个人信息，请妥善保管", file=sys.stderr)
        return 0
    if args.action == "delete":
        if not args.yes:
            print(
                f"将删除 {args.target} 的全部数据（{counts(rights.summary(data))}），无法恢复。"
                "确认请加 --yes",
                file=sys.stderr,
            )
            return 1
        erased = ctx.rights.erase_contact(args.target, by=who, origin="cli")
        print(f"已删除：{counts(erased.counts)}")
        for name in erased.left:
            print(f"仍提到该联系人的文件（请手动处理）：{name}", file=sys.stderr)
        return 0
    if args.action == "purge-inactive":
        days = args.days if args.days is not None else st.config.retention_days
        if days <= 0:
            print("保留期为 0：不清理", file=sys.stderr)
            return 1
        purged = ctx.rights.purge_message_data(days)
        print(f"已清理沉默超过 {days:g} 天的客户的消息数据：{counts(purged)}")
        return 0
    if not args.target:
        print("需要 CSV 文件路径", file=sys.stderr)
        return 2
    path = Path(args.target)
    if args.action == "export-book":
        rows = csvio.export_book(ctx, path)
        print(f"已导出 {rows} 位客户：{path}")
        return 0
    try:
        if args.action == "import":
            return _report(csvio.import_book(ctx, path), str(path))
        rows_to_add, report = csvio.read_adds(ctx, path)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    result = adds.queue(ctx, rows_to_add, f"csv:{path.name}", ctx.now.timestamp())
    _report(report, str(path))
    print(f"加入加好友队列 {result['queued']} 位，跳过 {result['skipped']} 位")
    return 1 if report.errors else 0


async def run(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        settings = settings_for(args)
        app = App(settings, OfflineTransport("the contacts tool"))  # type: ignore[arg-type]
        app.include(friends.plugin)
    except (ConfigError, PersonaError, StartupError, StoreError) as error:
        print(f"无法启动：{error}", file=sys.stderr)
        return 2
    print(f"数据目录：{settings.bot.data_dir}", file=sys.stderr)
    pid = instance_lock.holder(settings.bot.data_dir)  # a held lock = a running bot
    if pid is not None:
        print(
            f"机器人正在运行（pid {pid or '未知'}）：导入和删除最好在管理员私聊里用"
            "「导入客户」「删除客户」，机器人的缓存才会同步",
            file=sys.stderr,
        )
    try:
        return await act(app, args)
    except DataError as error:
        print(f"配置文件有误：{error}", file=sys.stderr)
        return 2
    finally:
        await app.stop()


def main() -> int:
    return asyncio.run(run(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
