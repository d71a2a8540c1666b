"""企业微信渠道活码：每个渠道码一个「联系我」二维码，客户扫码加员工时带上渠道码（state）。

    python3 scripts/wecom_qr.py make 渠道码 [--staff 员工1,员工2]
                                        生成（或取回已有的）渠道活码，图片存到数据目录 wecom/qr/
    python3 scripts/wecom_qr.py list    列出已生成的渠道活码

渠道码要先写进 persona/friends/channels.toml（例如 [A1]），机器人才会按渠道自动打标签、发欢迎语。
员工默认用 WECOM_STAFF_IDS。同一个渠道码只生成一次（config_id 记在数据目录里），再次运行只会
补下载图片。需要 BOT_TRANSPORT=wecom 的配置（见 README「接入企业微信」）。
退出码：0 完成，1 企业微信接口失败，2 配置错误。
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    import _env  # scripts/ is sys.path[0] when run as a program

    _env.bootstrap()

import argparse  # noqa: E402
import asyncio  # noqa: E402
from datetime import datetime  # noqa: E402

import bot  # noqa: E402
from pond import ConfigError, Settings, StartupError  # noqa: E402
from pond.transports.base import TransportError  # noqa: E402
from pond.transports.wecom import WecomTransport  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="wecom_qr.py",
        description="企业微信渠道活码：生成和列出。",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("action", choices=["make", "list"], help="make 生成，list 列出")
    parser.add_argument("channel", nargs="?", default="", help="渠道码，例如 A1")
    parser.add_argument("--staff", default="", help="员工 userid，逗号分隔（默认 WECOM_STAFF_IDS）")
    parser.add_argument("--data-dir", default=None, help="数据目录（默认同机器人）")
    parser.add_argument("--env-file", default=str(ROOT / ".env"), help="配置文件（默认 .env）")
    return parser.parse_args(argv)


def known_channels(settings: Settings) -> set[str]:
    path = settings.bot.persona_dir / "friends" / "channels.toml"
    try:
        return {code.upper() for code in tomllib.loads(path.read_text("utf-8"))}
    except (OSError, tomllib.TOMLDecodeError):
        return set()


async def run(args: argparse.Namespace, settings: Settings) -> int:
    transport = WecomTransport(
        settings.wecom, data_dir=settings.bot.data_dir, timezone=settings.bot.timezone, serve=False
    )
    try:
        if args.action == "list":
            ways = transport.channel_qrs()
            if not ways:
                print("还没有生成渠道活码（python3 scripts/wecom_qr.py make 渠道码）")
            for channel, way in ways:
                at = datetime.fromtimestamp(float(way.get("at", 0)), settings.bot.timezone)
                users = "、".join(way.get("users", []))
                print(
                    f"{channel}\t{way.get('file') or '（图片未下载）'}\t员工：{users}\t"
                    f"{at:%Y-%m-%d %H:%M}\tconfig_id={way.get('config_id')}"
                )
            return 0
        if not args.channel:
            print("请写上渠道码，例如：python3 scripts/wecom_qr.py make A1", file=sys.stderr)
            return 2
        if args.channel.upper() not in known_channels(settings):
            print(
                f"提醒：渠道码 {args.channel} 不在 persona/friends/channels.toml 里，扫码的客户"
                "不会按渠道打标签，请补上。",
                file=sys.stderr,
            )
        staff = [s.strip() for s in args.staff.replace("，", ",").split(",") if s.strip()]
        try:
            way = await transport.channel_qr(args.channel, staff)
        except ValueError as error:
            print(str(error), file=sys.stderr)
            return 2
        except TransportError as error:
            print(f"企业微信接口失败：{error}", file=sys.stderr)
            return 1
        print(f"渠道 {args.channel} 的活码：{way['file']}（config_id={way['config_id']}）")
        return 0
    finally:
        await transport.stop()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        settings = bot.tool_settings(args.data_dir, args.env_file)
        return asyncio.run(run(args, settings))
    except (ConfigError, StartupError) as error:
        print(bot.explain(error), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
