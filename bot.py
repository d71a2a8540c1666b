"""pond entry point: `python3 bot.py` (console simulator unless a WeChat token is configured).

python3 bot.py                         interactive console simulator
python3 bot.py --console --script F    play a script file (or - for stdin), print transcript
python3 bot.py --check                 load config, plugins and persona, then exit
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "scripts"))
from _env import chinese_argparse, ensure_venv  # noqa: E402

if __name__ == "__main__":
    ensure_venv()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
from datetime import datetime  # noqa: E402

sys.path.insert(0, str(ROOT))
from dotenv import load_dotenv  # noqa: E402

import plugins  # noqa: E402
from pond import (  # noqa: E402
    App,
    ConfigError,
    FakeClock,
    PersonaError,
    Settings,
    StartupError,
    health,
)
from pond.store import StoreError  # noqa: E402
from pond.transports.console import ConsoleError, ConsoleTransport, Simulator  # noqa: E402

# What stops start-up (or a CLI command) with a message for the operator, never a traceback.
STARTUP_ERRORS = (ConfigError, PersonaError, StoreError, StartupError)


def explain(error: Exception) -> str:
    labels = (
        (ConfigError, "配置错误 / config error"),
        (PersonaError, "人设模板错误 / template error"),
        (StoreError, "数据文件错误 / data error"),
    )
    label = next(
        (text for kind, text in labels if isinstance(error, kind)), "启动失败 / cannot start"
    )
    return f"{label}: {error}"


HELP_EPILOG = """例子：
  python3 bot.py                                启动（没配置微信令牌时是控制台模拟器）
  python3 bot.py --console --script 脚本.txt     播放一个模拟器脚本，打印对话记录
  python3 bot.py --check                        检查配置、插件和人设模板
模拟器里输入 /help 查看脚本写法。"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    chinese_argparse()
    parser = argparse.ArgumentParser(
        prog="bot.py",
        description="pond 私域流量助手：没配置微信令牌时启动控制台模拟器。",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--console", action="store_true", help="用控制台模拟器（不连微信）")
    parser.add_argument(
        "--script", metavar="文件", help="在模拟器里播放一个脚本文件（- 表示从标准输入读）"
    )
    parser.add_argument("--data-dir", metavar="目录", help="数据目录（代替 BOT_DATA_DIR）")
    parser.add_argument(
        "--env-file", metavar="文件", default=str(ROOT / ".env"), help="配置文件（默认 .env）"
    )
    parser.add_argument("--check", action="store_true", help="只检查配置、插件和人设模板，然后退出")
    return parser.parse_args(argv)


def configure_logging(settings: Settings) -> None:
    # Readable lines on stderr; JSON lines in BOT_LOG_FILE (rotated), which log tools parse
    # without guessing; secrets redacted on every handler. Message text is never logged at
    # INFO by pond (only ids, keys and counts), and chatty libraries are kept at WARNING.
    health.configure_logging(settings, sys.stderr)


def build_settings(args: argparse.Namespace) -> Settings:
    load_dotenv(args.env_file, override=False)
    settings = Settings.from_mapping(dict(os.environ))
    bot = settings.bot
    # Relative paths are the project's, wherever the command is started from.
    data_dir = Path(args.data_dir) if args.data_dir else bot.data_dir
    bot = dataclasses.replace(
        bot,
        data_dir=data_dir if data_dir.is_absolute() else ROOT / data_dir,
        persona_dir=bot.persona_dir if bot.persona_dir.is_absolute() else ROOT / bot.persona_dir,
    )
    return dataclasses.replace(settings, bot=bot)


def tool_settings(data_dir: str | None, env_file: str, console: bool = False) -> Settings:
    """For the command-line tools: the data dir the bot itself would use with the same .env
    (data/console when it would start the console simulator), unless one is given."""
    settings = build_settings(argparse.Namespace(data_dir=data_dir, env_file=env_file))
    if data_dir:
        return settings
    if use_console(argparse.Namespace(console=console, script=None), settings):
        folder = settings.bot.data_dir / "console"
        settings = dataclasses.replace(
            settings, bot=dataclasses.replace(settings.bot, data_dir=folder)
        )
    return settings


def use_console(args: argparse.Namespace, settings: Settings) -> bool:
    if args.console or args.script:
        return True
    mode = settings.bot.transport
    if mode not in {"auto", "console", "wechaty"}:
        raise ConfigError("BOT_TRANSPORT", "auto, console or wechaty", mode)
    return mode == "console" or (mode == "auto" and not settings.wechaty.puppet_service_token)


async def run_console(args: argparse.Namespace, settings: Settings) -> int:
    if args.script and not args.data_dir:
        # A script is a self-contained experiment: it must not see (or write) real data.
        tmp = tempfile.TemporaryDirectory(prefix="pond-console-")
        data_dir = Path(tmp.name)
    else:
        data_dir = settings.bot.data_dir if args.data_dir else settings.bot.data_dir / "console"
    settings = dataclasses.replace(
        settings, bot=dataclasses.replace(settings.bot, data_dir=data_dir)
    )
    clock = FakeClock(datetime.now(settings.bot.timezone), tz=settings.bot.timezone)
    transport = ConsoleTransport(clock.now)
    app = build_app(settings, transport, clock)
    beat = health.Heartbeat(app)
    beat.check_single()
    await app.start()
    print_binding_code(app)
    simulator = Simulator(app, clock, session=secrets.token_hex(3))
    try:
        async with health.heartbeat(app, beat):
            if args.script:
                await simulator.play_file(args.script)
            else:
                await simulator.interactive()
    except ConsoleError as error:
        print(f"！{error}", file=sys.stderr)
        return 2
    finally:
        await app.stop()
    return 0


async def serve(app: App) -> None:
    """Production run: refuse a second bot on the same data, beat while running (the
    command line and watchdogs read it), mark a clean stop. Use instead of app.run()."""
    beat = health.Heartbeat(app)
    beat.check_single()
    async with health.heartbeat(app, beat):
        await app.run()


def print_binding_code(app: App) -> None:
    # Some puppets change contact ids at each login, so ids in BOT_ADMIN_IDS can go stale:
    # whoever sends this one-time code in a private chat becomes an admin.
    code = app.admins.code()
    print(binding_code_line(code.value, code.expires_at), file=sys.stderr, flush=True)


def binding_code_line(code: str, expires_at: datetime, *, new: bool = False) -> str:
    """The terminal's line for the binding code (here at start, and scripts/admin.py code)."""
    return (
        f"{'新的' if new else ''}管理员绑定码：{code}"
        f"（{expires_at:%m-%d %H:%M} 前有效，只能用一次；私聊发给机器人即可成为管理员。"
        "过期后运行 python3 scripts/admin.py code 取新的）"
    )


def build_app(settings: Settings, transport: object, clock: object | None = None) -> App:
    app = App(settings, transport, clock=clock)  # type: ignore[arg-type]
    for plugin in plugins.load(settings.bot.plugins):
        app.include(plugin)
    return app


async def run_wechaty(settings: Settings) -> int:
    from pond.transports.wechaty import WechatyTransport

    transport = WechatyTransport(
        settings.wechaty, data_dir=settings.bot.data_dir, timezone=settings.bot.timezone
    )
    app = build_app(settings, transport)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.request_stop)
    print_binding_code(app)
    try:
        await serve(app)
    finally:
        await app.stop()
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    os.umask(0o077)  # data, logs, exports, QR codes: readable by the bot's own user only
    try:
        settings = build_settings(args)
        configure_logging(settings)
        health.secure_data_dir(settings.bot.data_dir)
        if args.check:
            app = build_app(settings, ConsoleTransport(datetime.now))
            asyncio.run(_check(app))
            print("配置、插件和人设模板检查通过")
            return 0
        if use_console(args, settings):
            return asyncio.run(run_console(args, settings))
        return asyncio.run(run_wechaty(settings))
    except STARTUP_ERRORS as error:
        print(explain(error), file=sys.stderr)
    except KeyboardInterrupt:  # Ctrl-C: the App has stopped cleanly on the way out
        print("\n（已退出）", file=sys.stderr)
        return 130
    return 2


async def _check(app: App) -> None:
    try:
        await app.start()
    finally:
        await app.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main(sys.argv[1:]))
