"""Preview the content calendar: the posts of the next days with every variant of their text,
how each would be published, and to whom. Also the calendar's lint.

    python3 scripts/calendar_preview.py                     the next 7 days from now
    python3 scripts/calendar_preview.py --days 14 --from 2026-12-01
    python3 scripts/calendar_preview.py --file my/calendar.toml
    python3 scripts/calendar_preview.py --moments           as on a transport that can post
                                                            to Moments (WeChat cannot yet)

Settings (BOT_PERSONA_DIR, BOT_TIMEZONE, CALENDAR_*, OUTBOX_QUIET_HOURS) come from .env and the
environment, as for bot.py. Nothing is sent and no data is touched.
Exit status: 0 the calendar is valid, 2 it is not (every problem is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
from datetime import date, datetime, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    import _env  # scripts/ is sys.path[0] when run as a program

    _env.bootstrap()

from dotenv import dotenv_values  # noqa: E402

from plugins import calendar as calendar_plugin  # noqa: E402
from plugins._calendar.dates import DateError  # noqa: E402
from plugins._calendar.model import CalendarError  # noqa: E402
from plugins._calendar.runtime import Runtime  # noqa: E402
from pond import App, FakeClock, PersonaError, Settings  # noqa: E402
from pond.transports.base import MOMENTS  # noqa: E402
from pond.transports.memory import ALL_BUT_MOMENTS, MemoryTransport  # noqa: E402

MODES = {"moments": "发朋友圈", "broadcast": "群发", "staff": "交人工发"}
WEEKDAYS = "一二三四五六日"


def build(args: argparse.Namespace, data_dir: Path) -> tuple[App, Runtime]:
    env = {**dotenv_values(ROOT / ".env"), **os.environ}
    values = {k: v for k, v in env.items() if v is not None}
    if args.file:
        values["CALENDAR_FILE"] = str(Path(args.file).resolve())
    if args.fallback:
        values["CALENDAR_FALLBACK"] = args.fallback
    settings = Settings.from_mapping(values)
    persona_dir = settings.bot.persona_dir
    bot = dataclasses.replace(
        settings.bot,
        data_dir=data_dir,
        persona_dir=persona_dir if persona_dir.is_absolute() else ROOT / persona_dir,
        admin_ids=(),
    )
    settings = dataclasses.replace(settings, bot=bot)
    start = args.start or datetime.now(bot.timezone).replace(tzinfo=None)
    clock = FakeClock(start, tz=bot.timezone)
    caps = ALL_BUT_MOMENTS | {MOMENTS} if args.moments else ALL_BUT_MOMENTS
    app = App(settings, MemoryTransport(clock.now, capabilities=caps), clock=clock)
    app.include(calendar_plugin.plugin)
    ctx = app.context("calendar")
    rt = Runtime(ctx, calendar_plugin.calendar_settings(ctx))
    rt.start()
    return app, rt


def show(app: App, rt: Runtime, days: int) -> None:
    now = app.clock.now()
    found = rt.upcoming(now, days)
    capable = "能发朋友圈" if MOMENTS in app.transport.capabilities else "不能发朋友圈"
    print(
        f"朋友圈日历预览：{rt.settings.path}\n"
        f"{now:%Y-%m-%d %H:%M} 起 {days} 天，共 {len(found)} 条"
        f"（按接入方式{capable}、CALENDAR_FALLBACK={rt.settings.fallback} 计算发布方式）\n"
    )
    current: date | None = None
    for occ, info in found:
        if occ.at.date() != current:
            current = occ.at.date()
            print(f"=== {current:%m-%d} 周{WEEKDAYS[current.weekday()]}")
        modes = "+".join(MODES.get(m, m) for m in info["modes"])
        title = f"  {info['title']}" if info["title"] else ""
        print(f"{occ.at:%m-%d %H:%M}  {info['post_id']}{title}  [{modes}]  {occ.entry.key}")
        notes = []
        if info["replaced_by"]:
            notes.append(f"当天被 {info['replaced_by']} 替换，不发")
        if info["quiet"]:
            notes.append("在免打扰时段：顺延到早上")
        if info["status"] not in ("scheduled", "replaced"):
            notes.append(f"状态 {info['status']}")
        targets = []
        if info["rooms"]:
            targets.append("群 " + ", ".join(info["rooms"]))
        if info["segment"]:
            targets.append(f"人群 {info['segment']}")
        if targets:
            print(f"    对象：{'；'.join(targets)}")
        if info["images"]:
            print(f"    图片：{', '.join(info['images'])}")
        if info["link"]:
            print(f"    链接：{info['link']}")
        for note in notes:
            print(f"    注意：{note}")
        try:
            texts = rt.render_all(occ)
        except PersonaError as error:
            print(f"    文案渲染失败：{error}")
            continue
        for number, text in enumerate(texts, 1):
            label = f"文案（变体 {number}/{len(texts)}）" if len(texts) > 1 else "文案"
            print(f"    {label}：")
            for line in text.splitlines():
                print(f"      {line}")
        print()


def parse_day(text: str) -> datetime:
    return datetime.combine(date.fromisoformat(text), time(0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="calendar_preview.py",
        description="朋友圈日历预览：列出接下来几天每条的文案和发送对象，并检查日历文件。",
    )
    parser.add_argument("--days", type=int, default=7, metavar="天", help="看几天（默认 7）")
    parser.add_argument(
        "--from", dest="start", type=parse_day, metavar="YYYY-MM-DD", help="从哪天开始（默认今天）"
    )
    parser.add_argument("--file", metavar="文件", help="日历文件（默认用 CALENDAR_FILE）")
    parser.add_argument(
        "--fallback",
        choices=("staff", "broadcast"),
        help="不能发朋友圈时怎么办（同 CALENDAR_FALLBACK）",
    )
    parser.add_argument("--moments", action="store_true", help="按接入方式能发朋友圈来预览")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pond-calendar-") as tmp:
        try:
            app, rt = build(args, Path(tmp))
        except (CalendarError, DateError) as error:
            print(f"日历有问题：\n{error}", file=sys.stderr)
            return 2
        except (PersonaError, ValueError) as error:
            print(f"无法预览：{error}", file=sys.stderr)
            return 2
        try:
            show(app, rt, max(1, min(args.days, 366)))
        except BrokenPipeError:  # piped into head / less that quit early
            sys.stderr.close()
        finally:
            asyncio.run(app.stop())
    return 0


if __name__ == "__main__":
    sys.exit(main())
