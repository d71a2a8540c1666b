"""pond entry point: `python3 bot.py` (console simulator unless a WeChat token is configured).

python3 bot.py                         interactive console simulator
python3 bot.py --console --script F    play a script file (or - for stdin), print transcript
python3 bot.py --check                 load config, plugins, persona and data files, then exit
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
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from datetime import datetime  # noqa: E402

sys.path.insert(0, str(ROOT))
from dotenv import load_dotenv  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402

import plugins  # noqa: E402
from pond import (  # noqa: E402
    App,
    ConfigError,
    FakeClock,
    PersonaError,
    Plugin,
    Settings,
    StartupError,
    health,
)
from pond.config import CORE_PREFIXES, check_keys, section_keys  # noqa: E402
from pond.store import InstanceLock, InstanceLocked, StoreError  # noqa: E402
from pond.store import backup as backups  # noqa: E402
from pond.store import lock as instance_lock  # noqa: E402
from pond.transports.console import ConsoleError, ConsoleTransport, Simulator  # noqa: E402

log = logging.getLogger("pond.bot")

# What stops start-up (or a CLI command) with a message for the operator, never a traceback.
STARTUP_ERRORS = (ConfigError, PersonaError, StoreError, StartupError)
RESTORE_HINT = "请查看 README「数据备份与恢复」，用 python3 scripts/backup.py restore 恢复备份"


def explain(error: Exception) -> str:
    labels = (
        (InstanceLocked, "无法启动"),
        (ConfigError, "配置错误"),
        (PersonaError, "人设模板错误"),
        (StoreError, "数据文件错误"),
    )
    label = next((text for kind, text in labels if isinstance(error, kind)), "无法启动")
    return f"{label}：{error}"


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
    try:
        health.configure_logging(settings, sys.stderr)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(
            "BOT_LOG_FILE", f"可以创建并写入的日志文件路径（现在：{reason}）", settings.bot.log_file
        ) from None


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
    mode = settings.bot.transport.lower()
    return mode == "console" or (mode == "auto" and not settings.wechaty.puppet_service_token)


def preflight(args: argparse.Namespace, settings: Settings) -> bool:
    """What --check and a start both check before any data is opened; True: console."""
    console = use_console(args, settings)
    url = settings.bot.database_url
    if url:
        from sqlalchemy.engine import make_url

        try:
            make_url(url).get_dialect().import_dbapi()
        except ImportError as error:
            raise ConfigError(
                "DATABASE_URL", f"已安装驱动的数据库地址（缺少 Python 模块 {error.name}）", url
            ) from None
    check_data_dir(settings.bot.data_dir)
    if not console and settings.bot.transport.lower() == "wecom":
        from pond.transports.wecom import check_settings

        check_settings(settings.wecom)
    elif not console:
        from pond.transports.wechaty import WechatyTransport

        # Its constructor checks the token and the endpoint; it connects only in start().
        WechatyTransport(
            settings.wechaty, data_dir=settings.bot.data_dir, timezone=settings.bot.timezone
        )
    return console


def check_data_dir(path: Path) -> None:
    """The data dir exists (or can be made), is owner-only and writable."""
    try:
        health.secure_data_dir(path)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(
            "BOT_DATA_DIR", f"运行机器人的用户可以创建并写入的目录（现在：{reason}）", str(path)
        ) from None


def check_config(settings: Settings, loaded: list[Plugin]) -> None:
    """Refuse keys under a prefix of ours that nothing reads (a typo, a lower-case key, a
    job that does not exist), naming the nearest real key; parse the kernel's other
    sections now so a bad value stops start-up, not the first heartbeat."""
    enabled = {plugin.name: plugin for plugin in loaded}
    known = set(settings.all_keys()) | set(section_keys(health.HealthConfig, "HEALTH"))
    prefixes = list(CORE_PREFIXES)
    for name in plugins.available():
        plugin = enabled.get(name)
        if plugin is None:
            # Not enabled: its keys are still known (config.example.env lists them all).
            with contextlib.suppress(Exception):
                plugin = importlib.import_module(f"plugins.{name}").plugin
        if plugin is None:
            continue
        prefixes.append(name.upper())
        if plugin.config_type is not None:
            known |= set(section_keys(plugin.config_type, name.upper()))
        known |= {"JOB_" + job.id.upper().replace(".", "_") + "_CRON" for job in plugin.jobs}
    # CI servers set JOB_NAME, JOB_URL...: only JOB_*_CRON keys are ours.
    ours = {
        key: value
        for key, value in settings.raw.items()
        if not key.upper().startswith("JOB_") or key.upper().endswith("_CRON")
    }
    check_keys(ours, known, prefixes)
    health.health_config(settings)


def backup_root(settings: Settings) -> Path:
    folder = settings.backup.dir or Path("backups")
    return folder if folder.is_absolute() else settings.bot.data_dir / folder


@contextlib.asynccontextmanager
async def scheduled_backups(app: App) -> AsyncIterator[None]:
    """Online backups on BACKUP_EVERY_H while the bot runs (see pond/store/backup.py)."""
    config = app.settings.backup
    if not config.enabled:
        yield
        return
    tz = app.settings.bot.timezone
    root = backup_root(app.settings)
    alerted: set[str] = set()  # days already alerted: retries every 10 minutes, one alert

    def failed(error: BaseException) -> None:
        reason = getattr(error, "strerror", None) or str(error)
        log.error("backup failed: %s", reason)
        app.record("backup.failed", error=type(error).__name__)
        day = datetime.now(tz).date().isoformat()
        if day not in alerted:
            alerted.add(day)
            app.alert("core/backup_alert", reason=reason, folder=str(root))

    task = asyncio.create_task(
        backups.run_schedule(
            app.settings.bot.data_dir,
            app.store.sql.sqlite_path,
            root,
            every_s=config.every_h * 3600,
            keep=config.keep,
            now=lambda: datetime.now(tz),
            on_error=failed,
        )
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
    check_data_dir(data_dir)
    InstanceLock(data_dir).acquire()  # held until the process ends
    clock = FakeClock(datetime.now(settings.bot.timezone), tz=settings.bot.timezone)
    transport = ConsoleTransport(clock.now)
    app = build_app(settings, transport, clock)
    beat = health.Heartbeat(app)
    beat.check_single()
    await app.start()
    print_binding_code(app)
    simulator = Simulator(app, clock, session=secrets.token_hex(3))
    backups_on = not args.script or bool(args.data_dir)  # a script's temp dir: no backups
    try:
        async with (
            health.heartbeat(app, beat),
            scheduled_backups(app) if backups_on else contextlib.nullcontext(),
        ):
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
    async with health.heartbeat(app, beat), scheduled_backups(app):
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
    if plugins.unknown(settings.bot.plugins):
        raise ConfigError(
            "BOT_PLUGINS",
            "逗号分隔的插件名，可用的有："
            + ", ".join(plugins.available())
            + "；自己的插件写成 包.模块:变量名",
            settings.raw.get("BOT_PLUGINS", ",".join(settings.bot.plugins)),
        )
    loaded = plugins.load(settings.bot.plugins)
    check_config(settings, loaded)  # before any data is opened
    app = App(settings, transport, clock=clock)  # type: ignore[arg-type]
    try:
        for plugin in loaded:
            app.include(plugin)
    except BaseException:
        app.store.close()
        raise
    return app


async def run_wechaty(settings: Settings) -> int:
    from pond.transports.wechaty import WechatyTransport

    InstanceLock(settings.bot.data_dir).acquire()  # held until the process ends
    transport: object
    if settings.bot.transport.lower() == "wecom":
        from pond.transports.wecom import WecomTransport

        transport = WecomTransport(
            settings.wecom, data_dir=settings.bot.data_dir, timezone=settings.bot.timezone
        )
    else:
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
        console = preflight(args, settings)
        if args.check:
            return check(settings)
        if console:
            return asyncio.run(run_console(args, settings))
        return asyncio.run(run_wechaty(settings))
    except STARTUP_ERRORS as error:
        print(explain(error), file=sys.stderr)
    except KeyboardInterrupt:  # Ctrl-C: the App has stopped cleanly on the way out
        print("\n（已退出）", file=sys.stderr)
        return 130
    except (SQLAlchemyError, sqlite3.DatabaseError) as error:
        # What the start-up check could not see (a damaged page it does not read).
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        print(
            f"数据文件错误：读写数据库失败（{reason}）。{RESTORE_HINT}。",
            file=sys.stderr,
        )
    return 2


def check(settings: Settings) -> int:
    """--check: everything a start checks, without serving. On the data of a running bot
    only config, plugins and persona are checked (on an empty copy): starting a second
    App there would recover the running bot's outbox under its feet."""
    pid = instance_lock.holder(settings.bot.data_dir)
    if pid is None:
        with InstanceLock(settings.bot.data_dir):
            asyncio.run(_check(settings))
        print("配置、插件、人设模板和数据文件检查通过")
        return 0
    with tempfile.TemporaryDirectory(prefix="pond-check-") as folder:
        empty = dataclasses.replace(settings.bot, data_dir=Path(folder))
        asyncio.run(_check(dataclasses.replace(settings, bot=empty)))
    print(f"配置、插件和人设模板检查通过（机器人正在运行，pid {pid}：数据文件没有检查）")
    return 0


async def _check(settings: Settings) -> None:
    app = build_app(settings, ConsoleTransport(datetime.now))
    app.checking = True
    try:
        await app.start()
    finally:
        await app.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main(sys.argv[1:]))
