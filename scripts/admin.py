"""管理员命令行 / operator commands from a terminal, on the bot's own data.

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
    python3 scripts/admin.py code                      当前的管理员绑定码（问正在运行的机器人）
    python3 scripts/admin.py help                      所有命令（中文名也可以用：状态、暂停…）

Any operator command works, by its English or Chinese name. Nothing here ever sends a
WeChat message: output is printed. When a bot is running on the same data (it holds
the data dir's lock, pond.lock), the command is handed to that bot and runs there, so its
pauses and caches stay right; otherwise it runs here, on the data files, with a
transport that cannot send.
Every command is recorded in the audit log like a chat command (origin "cli").
Exit codes: 0 done, 1 the bot did not answer or the command failed, 2 usage/config error.
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
Sleep = Callable[[float], Awaitable[None]]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="admin.py",
        description="pond 管理员命令行：在服务器上执行管理员命令（不会发送任何微信消息）",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("words", nargs="*", help="command and its arguments, e.g. pause all 2h")
    parser.add_argument("--json", action="store_true", help="status: the raw snapshot as JSON")
    parser.add_argument("--data-dir", metavar="DIR", help="override BOT_DATA_DIR")
    parser.add_argument("--env-file", metavar="FILE", default=str(ROOT / ".env"))
    parser.add_argument(
        "--console", action="store_true", help="the console simulator's data (data/console)"
    )
    parser.add_argument(
        "--timeout", type=float, default=20.0, metavar="S", help="wait this long for the bot"
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
        beat = health.read_heartbeat(app.store)
        # The data dir's lock says whether a bot runs (the heartbeat where none took it yet).
        pid = health.bot_pid(
            settings.bot.data_dir, beat, app.clock.now(), health.health_config(settings)
        )
        live = pid is not None
        if words == ["code"]:
            return await _code(app, live, args.timeout, sleep, stream)
        command = parse_command(app, words)
        if command is None:
            print(f"没有「{words[0]}」这个命令 / unknown command", file=sys.stderr)
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
                    f"正在运行的机器人没有「{words[0]}」这个命令（插件没在 BOT_PLUGINS 里？）"
                    " / the running bot has no such command",
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
        print("（命令出错，详情见日志 / the command failed, see the log）", file=sys.stderr)
        return 1
    return 2 if set(keys) & USAGE_KEYS else 0


async def _snapshot(app: App, live: bool, timeout: float, sleep: Sleep) -> dict[str, object] | None:
    if not live:
        return await health.snapshot(app)
    answer = await health.ask(app.store, {"op": "snapshot"}, timeout=timeout, sleep=sleep)
    snap = answer.get("snapshot") if answer else None
    return snap if isinstance(snap, dict) else None


async def _code(app: App, live: bool, timeout: float, sleep: Sleep, out: TextIO) -> int:
    if not live:
        print(
            "机器人没有在运行；启动时会在终端打印绑定码 / the bot is not running", file=sys.stderr
        )
        return 1
    answer = await health.ask(app.store, {"op": "code"}, timeout=timeout, sleep=sleep)
    if not answer or "code" not in answer:
        return _no_answer(health.read_heartbeat(app.store))
    print(
        f"管理员绑定码 / admin binding code: {answer['code']}（私聊发给机器人即可成为管理员）",
        file=out,
    )
    return 0


def _no_answer(beat: dict[str, object] | None) -> int:
    pid = beat.get("pid") if beat else "?"
    print(
        f"机器人（pid {pid}）在运行但没有响应，请稍后再试或查看日志 "
        "/ the running bot did not answer",
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
