"""群发命令行工具：在终端里管理群发活动，用的是机器人的数据目录。

    python3 scripts/broadcast.py status [NAME] [--watch [SECONDS]]   进度（进度条、预计发完时间）
    python3 scripts/broadcast.py create NAME_OR_FILE                 按活动文件创建（不发送）
    python3 scripts/broadcast.py dry-run NAME                        预览：人数、排除原因、文案样例
    python3 scripts/broadcast.py start NAME [--confirm N]            确认开始（N = 预览里的人数）
    python3 scripts/broadcast.py pause|resume|cancel NAME            暂停 / 继续 / 取消
    python3 scripts/broadcast.py report NAME                         报告（以发送记录为准）

NAME 是活动文件 persona/broadcasts/campaigns/NAME.toml；create 也可以直接给文件路径。

本工具从不发送任何消息。它执行和管理员聊天里一样的命令（群发创建、群发预览……），
用的是同一个数据目录（BOT_DATA_DIR；机器人会启动控制台模拟器时是 data/console；
--data-dir 可以指定），并且：
- start / resume 是请求，运行中的机器人在一分钟内执行（它的 broadcasts.tick 任务）；
  没有机器人在运行时活动就等着，工具会说明；
- pause / cancel 在发送记录里立即生效（暂停或取消的行机器人发不出去），
  机器人下次检查时更新活动状态。
退出码：0 完成，1 被拒绝或没有确认，2 配置或启动错误。
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
import os  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import TextIO  # noqa: E402

import bot  # noqa: E402
import plugins  # noqa: E402
from pond import (  # noqa: E402
    App,
    Clock,
    Command,
    Contact,
    Settings,
    SystemClock,
)
from pond.transports.offline import OfflineTransport  # noqa: E402

COMMANDS = {
    "status": "broadcast_status",
    "list": "broadcast_status",
    "create": "broadcast_create",
    "dry-run": "broadcast_dry_run",
    "start": "broadcast_start",
    "pause": "broadcast_pause",
    "resume": "broadcast_resume",
    "cancel": "broadcast_cancel",
    "report": "broadcast_report",
}
REFUSED = {"broadcasts/refused"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="broadcast.py",
        description="群发：创建、预览、开始、进度、暂停/继续/取消、报告。本工具从不发送消息。",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("action", choices=sorted(COMMANDS), help="要做什么（见下面的说明）")
    parser.add_argument(
        "name", nargs="?", default="", metavar="NAME", help="活动名（create 也可以是文件）"
    )
    parser.add_argument("--confirm", type=int, metavar="N", help="start：预览里的人数")
    parser.add_argument(
        "--watch", nargs="?", const=5.0, type=float, metavar="秒", help="status：每隔几秒刷新"
    )
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


def build_app(settings: Settings, clock: Clock | None = None) -> App:
    app = App(
        settings,
        OfflineTransport("the broadcast tool"),
        clock=clock or SystemClock(settings.bot.timezone),
    )  # type: ignore[arg-type]
    for plugin in plugins.load(["broadcasts"]):
        app.include(plugin)
    app.strict = True  # a failing command is an error exit, not a log line
    return app


async def run_command(
    settings: Settings,
    name: str,
    words: list[str],
    *,
    clock: Clock | None = None,
    out: TextIO | None = None,
) -> list[str]:
    """Run one operator command like an admin in chat would; returns the keys printed."""
    stream = out or sys.stdout
    app = build_app(settings, clock)
    keys: list[str] = []

    def show(key: str, text: str) -> None:
        keys.append(key)
        print(text, file=stream, flush=True)

    app.cli_output = show
    command = Command(
        name=name,
        args=tuple(words),
        rest=" ".join(words),
        sender=Contact(id="cli", name=_user()),
        timestamp=app.clock.now(),
        origin="cli",
    )
    try:
        await app.run_command(command)
    finally:
        await app.stop()
    if app.errors:
        raise app.errors[0]
    return keys


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "cli"


async def run(
    argv: list[str],
    *,
    clock: Clock | None = None,
    out: TextIO | None = None,
    ask: Callable[[str], str] | None = None,
) -> int:
    args = parse_args(argv)
    stream = out or sys.stdout
    settings = settings_for(args)
    if "broadcasts" not in settings.bot.plugins:
        print(
            "注意：BOT_PLUGINS 里没有 broadcasts，机器人不会执行群发请求",
            file=sys.stderr,
        )
    print(f"数据目录：{settings.bot.data_dir}", file=sys.stderr)
    if args.action not in {"status", "list"} and not args.name:
        print(f"{args.action}：需要活动名", file=sys.stderr)
        return 1
    words = [args.name] if args.name else []
    name = COMMANDS[args.action]
    if args.action == "start" and args.confirm is not None:
        words.append(str(args.confirm))
    if args.action == "status" and args.watch:
        return await _watch(settings, words, args.watch, clock, stream)
    keys = await run_command(settings, name, words, clock=clock, out=stream)
    if args.action == "start" and args.confirm is None and keys == ["broadcasts/dry_run"]:
        return await _confirm_interactively(settings, args.name, clock, stream, ask)
    return 1 if set(keys) & REFUSED else 0


async def _confirm_interactively(
    settings: Settings,
    name: str,
    clock: Clock | None,
    out: TextIO,
    ask: Callable[[str], str] | None,
) -> int:
    if ask is None:
        if not sys.stdin.isatty():
            return 1  # not confirmed: the dry run above says how to confirm
        ask = input
    try:
        answer = ask("输入上面的人数确认开始，直接回车放弃：").strip()
    except EOFError:
        answer = ""
    if not answer.isdigit():
        print("没有开始", file=out)
        return 1
    keys = await run_command(settings, "broadcast_start", [name, answer], clock=clock, out=out)
    return 1 if set(keys) & REFUSED else 0


async def _watch(
    settings: Settings, words: list[str], every: float, clock: Clock | None, out: TextIO
) -> int:
    tty = out.isatty()
    try:
        while True:
            if tty:
                out.write("\x1b[2J\x1b[H")  # clear the screen: the bar redraws in place
            keys = await run_command(settings, "broadcast_status", words, clock=clock, out=out)
            if set(keys) & REFUSED:
                return 1
            await asyncio.sleep(max(1.0, every))
    except KeyboardInterrupt:
        return 0


def main(argv: list[str]) -> int:
    try:
        return asyncio.run(run(argv))
    except KeyboardInterrupt:
        return 0
    except bot.STARTUP_ERRORS as error:
        print(bot.explain(error), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
