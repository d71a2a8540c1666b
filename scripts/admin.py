"""管理员命令行：在终端里执行管理员命令，用的是机器人自己的数据。

    python3 scripts/admin.py status [--json]           运行状态（和微信里发「状态」一样）
    python3 scripts/admin.py pause [all|CHAT_ID] [2h]  暂停全部或一个聊天
    python3 scripts/admin.py resume [all|CHAT_ID]      恢复
    python3 scripts/admin.py reload                    重新加载人设、命令名和规则文件
    python3 scripts/admin.py reviews                   待办（带编号）
    python3 scripts/admin.py resolve 1,2 sent|resend|skip
    python3 scripts/admin.py find TEXT                 按昵称/备注/id 找客户
    python3 scripts/admin.py tag|untag CONTACT_ID TAG  打标签 / 去标签（friends 插件）
    python3 scripts/admin.py export CONTACT_ID         导出客户资料（friends 插件）
    python3 scripts/admin.py delete CONTACT_ID [CODE]  删除客户资料：先拿确认码，再带上确认码
    python3 scripts/admin.py report [today|DATE]       日报
    python3 scripts/admin.py code [--new]              管理员绑定码（问正在运行的机器人；过期了
                                                       会换新的；--new 马上换，旧的作废，解除锁定）
    python3 scripts/admin.py help                      所有命令（中文名也可以用：状态、暂停…）

所有管理员命令都能用，英文名或中文名都行。这里从不发送微信消息，结果直接打印出来。
同一份数据上有机器人在运行（它持有数据目录的锁 pond.lock）时，命令交给那个机器人去执行，
它的暂停和缓存才会一致；否则就在这里、直接在数据文件上执行（用一个不能发消息的通道）。
每条命令都像聊天里的命令一样记进审计日志（来源 "cli"）。
退出码：0 完成，1 机器人没有回应或命令失败，2 用法或配置错误。
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
import dataclasses  # noqa: E402
import getpass  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import TextIO  # noqa: E402

import bot  # noqa: E402
import plugins  # noqa: E402
from pond import (  # noqa: E402
    App,
    Clock,
    Command,
    Contact,
    Message,
    Settings,
    SystemClock,
    health,
)

USAGE_KEYS = {"admin/usage", "admin/unknown_command"}
# Short English words for other plugins' commands (their own names are longer).
SHORTCUTS = {"export": "export_contact", "delete": "delete_contact", "erase": "delete_contact"}
CODE_WORDS = {"code", "绑定码"}
Sleep = Callable[[float], Awaitable[None]]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="admin.py",
        description="pond 管理员命令行：在服务器上执行管理员命令（不会发送任何微信消息）",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "words", nargs="*", metavar="命令", help="命令和它的参数，例如 pause all 2h 或 暂停 all 2h"
    )
    parser.add_argument("--json", action="store_true", help="status：输出原始状态数据（JSON）")
    parser.add_argument("--new", action="store_true", help="code：马上换一个新的绑定码，旧的作废")
    parser.add_argument("--data-dir", metavar="目录", help="数据目录（代替 BOT_DATA_DIR）")
    parser.add_argument(
        "--env-file", metavar="文件", default=str(ROOT / ".env"), help="配置文件（默认 .env）"
    )
    parser.add_argument(
        "--console", action="store_true", help="读控制台模拟器的数据（data/console）"
    )
    parser.add_argument(
        "--timeout", type=float, default=20.0, metavar="秒", help="最多等运行中的机器人多少秒"
    )
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace) -> Settings:
    return bot.tool_settings(args.data_dir, args.env_file, args.console)


def build_app(settings: Settings, clock: Clock | None = None) -> App:
    """The bot's plugins (for their commands and review sources) plus admin, on a transport
    that cannot send. Not started: no outbox recovery, no start-up hooks, no jobs."""
    app = App(
        settings,
        health.OfflineTransport(),  # type: ignore[arg-type]
        clock=clock or SystemClock(settings.bot.timezone),
    )
    for plugin in plugins.load([*settings.bot.plugins, "admin"]):
        app.include(plugin)
    admin = app.plugins["admin"]
    app.persona.require(admin.persona_keys, owner="admin")
    return app


def _user() -> str:
    try:
        return getpass.getuser()[:40]
    except (KeyError, OSError):
        return "cli"


def parse_command(app: App, words: list[str]) -> Command | None:
    """The same parser as chat: English or Chinese names, aliases, a leading /."""
    user = _user()
    message = Message(
        id="",
        sender=Contact(id=f"cli:{user}", name=user),
        text=" ".join(words),
        timestamp=app.clock.now(),
    )
    parsed = app.commands.parse(message)
    if parsed is None and words and words[0].lower() in SHORTCUTS:
        name = SHORTCUTS[words[0].lower()]
        if name in app.commands.specs:
            return parse_command(app, [name, *words[1:]])
    return dataclasses.replace(parsed, origin="cli") if parsed else None


async def run(
    argv: list[str],
    *,
    settings: Settings | None = None,
    clock: Clock | None = None,
    out: TextIO | None = None,
    sleep: Sleep = asyncio.sleep,
    configure_logging: bool = False,
) -> int:
    args = parse_args(argv)
    stream = out or sys.stdout
    settings = settings or settings_for(args)
    if configure_logging:  # warnings only, redacted, and never into the bot's own log file
        quiet = dataclasses.replace(settings.bot, log_level="WARNING", log_file="")
        health.configure_logging(dataclasses.replace(settings, bot=quiet), sys.stderr)
    words = args.words or ["help"]
    app = build_app(settings, clock)
    try:
        # Plugins' commands and sources read their state (Plugin(state=...)); the App is
        # never started here, so its states are built as start-up would build them.
        # A plugin whose data cannot be read is told and left out; the others still work.
        await app.build_states(
            lambda name, error: print(f"「{name}」插件的数据没能读取：{error}", file=sys.stderr)
        )
        beat = health.read_heartbeat(app.store)
        # The data dir's lock says whether a bot runs (the heartbeat where none took it yet).
        pid = health.bot_pid(
            settings.bot.data_dir, beat, app.clock.now(), health.health_config(settings)
        )
        live = pid is not None
        if words[0] in CODE_WORDS and words[1:] in ([], ["new"], ["新"]):
            new = args.new or bool(words[1:])
            return await _code(app, live, new, args.timeout, sleep, stream)
        command = parse_command(app, words)
        if command is None:
            print(f"没有「{words[0]}」这个命令", file=sys.stderr)
            command = parse_command(app, ["help"])
            assert command is not None
            await _run_here(app, command, stream)
            return 2
        if args.json and command.name == "status":
            snap = await _snapshot(app, live, args.timeout, sleep)
            if snap is None:
                return _no_answer(beat)
            print(json.dumps(snap, ensure_ascii=False, indent=2), file=stream)
            return 0
        if live:
            request = {
                "command": command.name,
                "args": list(command.args),
                "rest": command.rest,
                "user": command.sender.name,
            }
            answer = await health.ask(app.store, request, timeout=args.timeout, sleep=sleep)
            if answer is None:
                return _no_answer(beat)
            if answer.get("error") == "unknown_command":
                print(
                    f"正在运行的机器人没有「{words[0]}」这个命令（插件没在 BOT_PLUGINS 里？）",
                    file=sys.stderr,
                )
                return 2
            outputs = [(str(k), str(t)) for k, t in answer.get("outputs", [])]
            for _, text in outputs:
                print(text, file=stream)
            return _exit_code([k for k, _ in outputs])
        return _exit_code(await _run_here(app, command, stream))
    finally:
        await app.stop()


async def _run_here(app: App, command: Command, out: TextIO) -> list[str]:
    outputs = await health.run_captured(app, command)
    for _, text in outputs:
        print(text, file=out)
    return [key for key, _ in outputs]


def _exit_code(keys: list[str]) -> int:
    if not keys:
        print("（命令出错，详情见日志）", file=sys.stderr)
        return 1
    return 2 if set(keys) & USAGE_KEYS else 0


async def _snapshot(app: App, live: bool, timeout: float, sleep: Sleep) -> dict[str, object] | None:
    if not live:
        return await health.collect_status(app)  # the plugins' status_source parts
    answer = await health.ask(app.store, {"op": "snapshot"}, timeout=timeout, sleep=sleep)
    snap = answer.get("snapshot") if answer else None
    return snap if isinstance(snap, dict) else None


async def _code(app: App, live: bool, new: bool, timeout: float, sleep: Sleep, out: TextIO) -> int:
    if not live:
        print("机器人没有在运行；启动时会在终端打印绑定码", file=sys.stderr)
        return 1
    request = {"op": "code", "new": new, "user": _user()}
    answer = await health.ask(app.store, request, timeout=timeout, sleep=sleep)
    if not answer or "code" not in answer:
        return _no_answer(health.read_heartbeat(app.store))
    try:
        expires = datetime.fromisoformat(str(answer.get("expires_at"))).astimezone(app.clock.tz)
    except ValueError:
        return _no_answer(health.read_heartbeat(app.store))
    print(bot.binding_code_line(str(answer["code"]), expires, new=new), file=out)
    return 0


def _no_answer(beat: dict[str, object] | None) -> int:
    pid = beat.get("pid") if beat else "?"
    print(
        f"机器人（pid {pid}）在运行但没有响应，请稍后再试或查看日志",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str]) -> int:
    os.umask(0o077)  # exports and anything else created here: owner-only, like the bot's
    try:
        return asyncio.run(run(argv, configure_logging=True))
    except KeyboardInterrupt:
        return 1
    except bot.STARTUP_ERRORS as error:
        print(bot.explain(error), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
