"""Content calendar: key dates, the daily post on a fake clock, restarts and downtime,
publishing by transport capability (Moments post, Moments-style broadcast, hand to staff),
launch sequences, validation and hot reload, the operator listing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, ChatSim

from plugins import calendar as calendar_plugin
from plugins._calendar.dates import Holidays
from plugins._calendar.parse import parse_offset
from pond import ConfigError, StartupError
from pond.cron import standard_cron
from pond.transports.base import MOMENTS

HOLIDAYS = ROOT / "persona" / "calendar" / "holidays.toml"
MON_0800 = datetime(2026, 11, 23, 8, 0)  # a Monday

DAILY = """
[[post]]
id = "daily"
title = "daily tea"
key = "calendar/weekly_life"
cron = "0 9 * * *"
rooms = ["r1@chatroom", "r2@chatroom"]
"""


def write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "cal"
    folder.mkdir(exist_ok=True)
    if not (folder / "holidays.toml").exists():
        shutil.copy(HOLIDAYS, folder / "holidays.toml")
    (folder / "media").mkdir(exist_ok=True)
    for name in ("a.png", "b.png"):
        (folder / "media" / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    path = folder / "calendar.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def make(
    tmp_path: Path,
    text: str = DAILY,
    *,
    start: datetime = MON_0800,
    fallback: str = "broadcast",
    **env: str,
) -> ChatSim:
    path = write(tmp_path, text)
    settings = {
        "CALENDAR_FILE": str(path),
        "CALENDAR_FALLBACK": fallback,
        "OUTBOX_TYPING_MAX_S": "0",
        **env,
    }
    return await ChatSim.create(tmp_path / "data", plugins=["calendar"], env=settings, start=start)


def at(sim: ChatSim, hour: int, minute: int = 0, second: int = 0, days: int = 0) -> datetime:
    base = sim.clock.now().replace(hour=hour, minute=minute, second=second, microsecond=0)
    return base + timedelta(days=days)


async def advance_to(sim: ChatSim, moment: datetime):  # type: ignore[no-untyped-def]
    return await sim.advance((moment - sim.clock.now()).total_seconds())


async def down_until(sim: ChatSim, moment: datetime):  # type: ignore[no-untyped-def]
    """The bot is not running until `moment` (no job fires), then starts on the same data."""
    sim.clock.set(moment)
    await sim.restart()
    return await sim.advance(0)


def posts(said) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(s.to, s.key) for s in said if s.key.startswith("calendar/") and s.to != "admin"]


def cal_ctx(sim: ChatSim) -> Any:
    """The calendar plugin's Context (its listings read the plugin's state)."""
    return sim.app.context("calendar")


def events(sim: ChatSim, kind: str) -> list[dict[str, object]]:
    return [e["data"] for e in sim.app.store.sql.events(kind=kind)]  # type: ignore[misc]


# -- key dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "year", "expected"),
    [
        ("中秋", 2026, date(2026, 9, 25)),
        ("中秋节", 2027, date(2027, 9, 15)),
        ("春节", 2027, date(2027, 2, 6)),
        ("除夕", 2027, date(2027, 2, 5)),  # lunar 12th month of 2026 has 29 days
        ("端午", 2026, date(2026, 6, 19)),
        ("七夕", 2026, date(2026, 8, 19)),
        ("清明", 2026, date(2026, 4, 5)),  # a solar term, not a lunar date
        ("母亲节", 2026, date(2026, 5, 10)),
        ("感恩节", 2026, date(2026, 11, 26)),
        ("618", 2026, date(2026, 6, 18)),
        ("双11", 2027, date(2027, 11, 11)),
        ("12-24", 2026, date(2026, 12, 24)),
        ("冬至", 2026, date(2026, 12, 22)),
    ],
)
def test_key_dates_resolve_to_gregorian_dates(name: str, year: int, expected: date) -> None:
    assert Holidays.load(HOLIDAYS).resolve(name).dates(year, year) == [expected]


def test_offsets_and_standard_cron_weekdays() -> None:
    assert parse_offset("T-3d") == timedelta(days=-3)
    assert parse_offset("T-2h30m") == timedelta(hours=-2, minutes=-30)
    assert parse_offset("T0") == timedelta(0)
    assert parse_offset("T+1d") == timedelta(days=1)
    # Standard cron counts 0/7 as Sunday; APScheduler 3 would read 1 as Tuesday.
    assert standard_cron("30 9 * * 1") == "30 9 * * mon"
    assert standard_cron("0 9 * * 1-5") == "0 9 * * mon,tue,wed,thu,fri"
    assert standard_cron("0 9 * * 0,7") == "0 9 * * sun"


async def test_mid_autumn_2027_entry_is_listed_on_its_gregorian_date(tmp_path: Path) -> None:
    sim = await make(
        tmp_path,
        '[[post]]\nid = "moon"\nkey = "calendar/mid_autumn"\non = "中秋"\ntime = "09:00"\n',
    )
    [listed] = calendar_plugin.scheduled_posts(cal_ctx(sim), date(2027, 9, 15))
    assert listed["post_id"] == "moon"
    assert listed["at"] == "2027-09-15T09:00:00+08:00"
    past = calendar_plugin.scheduled_posts(cal_ctx(sim), date(2026, 9, 25))
    assert past[0]["status"] == "unpublished"  # before the calendar ran
    assert calendar_plugin.scheduled_posts(cal_ctx(sim), date(2027, 9, 16)) == []
    await sim.close()


# -- the daily post, restarts and downtime ------------------------------------------------------


async def test_daily_post_at_nine_reaches_its_targets_once(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    said = await advance_to(sim, at(sim, 10))
    assert posts(said) == [
        ("r1@chatroom", "calendar/weekly_life"),
        ("r2@chatroom", "calendar/weekly_life"),
    ]
    assert all(s.at.strftime("%H:%M") == "09:00" for s in said)
    assert all(s.cls == "marketing" for s in said)
    assert posts(await advance_to(sim, at(sim, 23))) == []  # once a day, not once a tick
    [published] = events(sim, "calendar.published")
    assert published["post_id"] == "daily"
    assert published["modes"] == ["broadcast"]
    assert published["rows"] == 2
    tomorrow = await advance_to(sim, at(sim, 9, 30, days=1))
    assert len(posts(tomorrow)) == 2
    await sim.close()


async def test_a_replayed_fire_time_does_nothing(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    await advance_to(sim, at(sim, 9, 1))
    nine = at(sim, 9)
    assert not await sim.app.run_job("calendar.tick", nine)  # the kernel's (job, fire time)
    # Even a tick that does run (another fire time) finds the occurrence already noted.
    assert await sim.app.run_job("calendar.tick", at(sim, 9, 1))
    assert posts(await sim.advance(60)) == []
    assert len(events(sim, "calendar.published")) == 1
    await sim.close()


async def test_restart_right_after_nine_does_not_post_again(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    first = await advance_to(sim, at(sim, 9, 0, 30))
    assert len(posts(first)) == 2
    await sim.restart()  # 09:00:30
    again = await advance_to(sim, at(sim, 12))
    assert posts(again) == []
    assert len(events(sim, "calendar.published")) == 1
    await sim.close()


async def test_down_from_0850_to_0910_posts_once_on_start(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    await advance_to(sim, at(sim, 8, 50))
    said = await down_until(sim, at(sim, 9, 10))
    assert posts(said) == [
        ("r1@chatroom", "calendar/weekly_life"),
        ("r2@chatroom", "calendar/weekly_life"),
    ]
    [published] = events(sim, "calendar.published")
    assert published["late_s"] == 600
    await sim.restart()
    assert posts(await advance_to(sim, at(sim, 12))) == []
    await sim.close()


async def test_down_beyond_grace_reports_the_missed_post_and_does_not_send_it(
    tmp_path: Path,
) -> None:
    sim = await make(tmp_path)
    await advance_to(sim, at(sim, 8, 50))
    said = await down_until(sim, at(sim, 9, 45))
    assert posts(said) == []
    assert [(s.to, s.key) for s in said] == [("admin", "calendar/missed_alert")]
    assert "daily tea" in said.texts[0]
    assert events(sim, "calendar.missed") == [
        {"post_id": "daily", "at": "2026-11-23T09:00:00+08:00"}
    ]
    [listed] = calendar_plugin.scheduled_posts(cal_ctx(sim), date(2026, 11, 23))
    assert listed["status"] == "missed"
    await sim.restart()
    assert (await sim.advance(60)).keys == []  # reported once
    await sim.close()


async def test_grace_is_configurable(tmp_path: Path) -> None:
    sim = await make(tmp_path, CALENDAR_GRACE_MIN="60")
    await advance_to(sim, at(sim, 8, 50))
    said = await down_until(sim, at(sim, 9, 45))
    assert len(posts(said)) == 2
    await sim.close()


# -- publishing by capability -----------------------------------------------------------------


async def test_moments_capable_transport_posts_to_moments(tmp_path: Path) -> None:
    text = DAILY.replace('rooms = ["r1@chatroom", "r2@chatroom"]', 'images = ["media/a.png"]')
    sim = await make(tmp_path, text)
    sim.transport.capabilities = sim.transport.capabilities | {MOMENTS}
    said = await advance_to(sim, at(sim, 10))
    assert [(s.kind, s.to, s.key, s.cls) for s in said] == [
        ("post", "moments", "calendar/weekly_life", "marketing")
    ]
    [performed] = [p.action for p in sim.transport.performed]
    assert performed.media is not None and performed.media.path.endswith("a.png")
    assert performed.text
    await sim.close()


async def test_without_moments_the_post_is_handed_to_staff_who_confirm(tmp_path: Path) -> None:
    text = DAILY.replace(
        'rooms = ["r1@chatroom", "r2@chatroom"]', 'images = ["media/a.png", "media/b.png"]'
    )
    sim = await make(tmp_path, text, fallback="staff")
    said = await advance_to(sim, at(sim, 9, 30))
    assert [(s.to, s.key) for s in said] == [
        ("admin", "calendar/staff_post"),  # what to do, how to confirm
        ("admin", "calendar/weekly_life"),  # the text alone, to copy
        ("admin", "calendar/weekly_life"),  # picture 1
        ("admin", "calendar/weekly_life"),  # picture 2
    ]
    assert "daily" in said.texts[0]
    images = [p.action.media.path for p in sim.transport.performed if p.action.media]
    assert [Path(p).name for p in images] == ["a.png", "b.png"]
    [pending] = calendar_plugin.pending_staff_posts(cal_ctx(sim))
    assert pending["post_id"] == "daily"
    assert pending["delivered"] is True
    reply = await sim.say("admin", "已发 daily")
    assert reply.keys == ["calendar/confirmed"]
    assert calendar_plugin.pending_staff_posts(cal_ctx(sim)) == []
    assert (await advance_to(sim, at(sim, 12))).keys == []  # confirmed: no reminder
    [confirmed] = events(sim, "calendar.confirmed")
    assert confirmed["post_id"] == "daily"
    assert calendar_plugin.scheduled_posts(cal_ctx(sim), date(2026, 11, 23))[0]["status"] == (
        "confirmed"
    )
    await sim.close()


async def test_unconfirmed_staff_post_is_reminded_once(tmp_path: Path) -> None:
    sim = await make(tmp_path, fallback="staff")
    await advance_to(sim, at(sim, 9, 30))
    later = await advance_to(sim, at(sim, 12))
    assert later.keys == ["calendar/staff_reminder"]
    assert later.sent[0].at.strftime("%H:%M") == "10:00"
    assert "交给你 1 小时了" in later.texts[0]
    assert (await advance_to(sim, at(sim, 20))).keys == []
    assert calendar_plugin.pending_staff_posts(cal_ctx(sim))[0]["reminded"] is True
    # The command alone works when one post is waiting; 不发 closes it as skipped.
    assert (await sim.say("admin", "不发")).keys == ["calendar/skipped"]
    assert calendar_plugin.pending_staff_posts(cal_ctx(sim)) == []
    await sim.close()


async def test_confirming_an_unknown_post_lists_what_is_waiting(tmp_path: Path) -> None:
    sim = await make(tmp_path, fallback="staff")
    assert (await sim.say("admin", "已发 daily")).keys == ["calendar/confirm_unknown"]
    await advance_to(sim, at(sim, 9, 5))
    said = await sim.say("admin", "已发 nope")
    assert said.keys == ["calendar/confirm_unknown"]
    assert "daily" in said.texts[0]
    await sim.close()


async def test_a_newer_handoff_expires_the_unconfirmed_older_one(tmp_path: Path) -> None:
    sim = await make(tmp_path, fallback="staff", CALENDAR_RELOAD_MIN="0")
    await advance_to(sim, at(sim, 9, 30, days=1))
    [pending] = calendar_plugin.pending_staff_posts(cal_ctx(sim))
    assert pending["at"] == "2026-11-24T09:00:00+08:00"
    assert events(sim, "calendar.expired") == [
        {"post_id": "daily", "at": "2026-11-23T09:00:00+08:00"}
    ]
    await sim.close()


async def test_a_staff_post_without_admins_fails_loudly(tmp_path: Path) -> None:
    sim = await make(tmp_path, fallback="staff", BOT_ADMIN_IDS="")
    await advance_to(sim, at(sim, 9, 30))
    assert events(sim, "calendar.failed") == [
        {"post_id": "daily", "at": "2026-11-23T09:00:00+08:00", "reason": "no_admins"}
    ]
    await sim.close()


async def test_quiet_hours_defer_a_late_evening_broadcast_to_the_morning(tmp_path: Path) -> None:
    sim = await make(tmp_path, DAILY.replace("0 9 * * *", "30 22 * * *"), CALENDAR_RELOAD_MIN="0")
    evening = await advance_to(sim, at(sim, 23, 30))
    assert posts(evening) == []
    assert calendar_plugin.scheduled_posts(cal_ctx(sim), date(2026, 11, 23))[0]["quiet"] is True
    morning = await advance_to(sim, at(sim, 8, 30, days=1))
    assert len(posts(morning)) == 2
    assert all(s.at.strftime("%H:%M") == "08:00" for s in morning)
    await sim.close()


async def test_quiet_hours_also_hold_the_staff_handoff(tmp_path: Path) -> None:
    sim = await make(
        tmp_path,
        DAILY.replace("0 9 * * *", "30 22 * * *"),
        fallback="staff",
        CALENDAR_RELOAD_MIN="0",
    )
    assert (await advance_to(sim, at(sim, 23, 30))).keys == []
    morning = await advance_to(sim, at(sim, 8, 30, days=1))
    assert morning.keys[0] == "calendar/staff_post"
    assert morning.sent[0].at.strftime("%H:%M") == "08:00"
    reminder = await advance_to(sim, at(sim, 10))
    assert reminder.keys == ["calendar/staff_reminder"]  # an hour after it could be seen
    assert reminder.sent[0].at.strftime("%H:%M") == "09:00"
    await sim.close()


async def test_segment_members_get_one_message_and_opt_outs_are_honoured(
    tmp_path: Path,
) -> None:
    text = DAILY.replace(
        'rooms = ["r1@chatroom", "r2@chatroom"]',
        'rooms = ["r1@chatroom"]\nsegment = "vip"\nimages = ["media/a.png", "media/b.png"]',
    )
    sim = await make(tmp_path, text)
    for who in ("ann", "bob", "cat"):
        sim.app.book.tag(who, ["vip"], sim.clock.now())
    sim.app.outbox.opt_out("cat", source="test")
    said = await advance_to(sim, at(sim, 10))
    sent = [(s.to, s.key) for s in said]
    assert sent.count(("r1@chatroom", "calendar/weekly_life")) == 3  # text, picture, picture
    assert sent.count(("ann", "calendar/weekly_life")) == 1  # text with the first picture
    assert sent.count(("bob", "calendar/weekly_life")) == 1
    assert ("cat", "calendar/weekly_life") not in sent
    ann = next(p.action for p in sim.transport.performed if p.action.to == "ann")
    assert ann.text and ann.media is not None and ann.contact_id == "ann"
    await sim.close()


# -- launches, key dates, replacements --------------------------------------------------------

LAUNCH = """
[[launch]]
id = "winter"
title = "winter tea"
at = 2026-11-28T20:00:00
rooms = ["vip@chatroom"]
channel = "broadcast"
vars = { product = "shoumei" }

[[launch.step]]
id = "teaser"
offset = "T-3d"
time = "12:00"
key = "calendar/launch_teaser"

[[launch.step]]
id = "reveal"
offset = "T-1d"
key = "calendar/launch_reveal"

[[launch.step]]
id = "countdown"
offset = "T-2h"
key = "calendar/launch_countdown"

[[launch.step]]
id = "open"
offset = "T0"
key = "calendar/launch_open"

[[launch.step]]
id = "last_call"
offset = "T+1d"
key = "calendar/launch_last_call"
"""


async def test_a_launch_sequence_runs_its_steps_relative_to_the_launch(tmp_path: Path) -> None:
    sim = await make(tmp_path, LAUNCH, CALENDAR_RELOAD_MIN="0")
    said = await advance_to(sim, at(sim, 23, days=6))
    steps = [(s.at.strftime("%m-%d %H:%M"), s.key) for s in said]
    assert steps == [
        ("11-25 12:00", "calendar/launch_teaser"),
        ("11-27 20:00", "calendar/launch_reveal"),
        ("11-28 18:00", "calendar/launch_countdown"),
        ("11-28 20:00", "calendar/launch_open"),
        ("11-29 20:00", "calendar/launch_last_call"),
    ]
    assert {s.to for s in said} == {"vip@chatroom"}
    assert "shoumei" in said.texts[1] and "20:00" in said.texts[1]  # launch vars reach copy
    published = [e["post_id"] for e in events(sim, "calendar.published")]
    assert published == [
        f"winter.{step}" for step in ("teaser", "reveal", "countdown", "open", "last_call")
    ]
    await sim.close()


async def test_a_key_date_post_replaces_the_routine_post_that_day(tmp_path: Path) -> None:
    text = DAILY + (
        '\n[[post]]\nid = "thanks"\nkey = "calendar/holiday_greeting"\non = "感恩节"\n'
        'time = "10:00"\nrooms = ["r1@chatroom"]\nreplaces = ["daily"]\n'
    )
    sim = await make(tmp_path, text, start=datetime(2026, 11, 26, 8, 0), CALENDAR_RELOAD_MIN="0")
    listed = calendar_plugin.scheduled_posts(cal_ctx(sim), date(2026, 11, 26))
    assert [(p["post_id"], p["status"]) for p in listed] == [
        ("daily", "replaced"),
        ("thanks", "scheduled"),
    ]
    said = await advance_to(sim, at(sim, 12))
    assert posts(said) == [("r1@chatroom", "calendar/holiday_greeting")]
    assert "感恩节" in said.texts[0]  # the holiday name reaches the copy
    assert len(posts(await advance_to(sim, at(sim, 9, 30, days=1)))) == 2
    await sim.close()


# -- validation and hot reload ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            'key = "calendar/weekly_life"\nat = "2026-13-01 09:00"',
            "帖子 bad，字段 at：「2026-13-01 09:00」不是日期时间",
        ),
        ('key = "calendar/nope"\ncron = "0 9 * * *"', "帖子 bad，字段 key：没有文案 calendar/nope"),
        (
            'key = "calendar/weekly_life"\non = "中球"\ntime = "09:00"',
            "帖子 bad，字段 on：不认识的节日「中球」",
        ),
        (
            'key = "calendar/weekly_life"\ncron = "0 25 * * *"',
            "帖子 bad，字段 cron：「0 25 * * *」不是正确的 cron",
        ),
        (
            'key = "calendar/weekly_life"\non = "中秋"',
            "帖子 bad，字段 time：用 on 写节日时还要写时间",
        ),
        ('key = "calendar/weekly_product"\ncron = "0 9 * * *"', "需要变量 product"),
        (
            'key = "calendar/weekly_life"\ncron = "0 9 * * *"\nimages = ["x.png"]',
            "字段 images：「x.png」这个图片文件不存在",
        ),
        ('key = "calendar/upcoming"\ncron = "0 9 * * *"', "日历插件自己的提醒文案"),
        (
            'key = "calendar/weekly_life"\ncron = "0 9 * * *"\nrooms = ["茶友群"]',
            "「茶友群」不是群 id",
        ),
        (
            'key = "calendar/weekly_life"\ncron = "0 9 * * *"\ntiem = "x"',
            "帖子 bad，字段 tiem：不认识这个字段",
        ),
    ],
)
async def test_a_bad_calendar_stops_start_up_naming_file_post_and_field(
    tmp_path: Path, entry: str, expected: str
) -> None:
    with pytest.raises(StartupError) as failure:
        await make(tmp_path, f'[[post]]\nid = "bad"\n{entry}\n')
    message = str(failure.value)
    assert "calendar.toml" in message
    assert expected in message


async def test_an_unknown_holiday_name_in_holidays_file_stops_start_up(tmp_path: Path) -> None:
    write(tmp_path, DAILY)
    (tmp_path / "cal" / "holidays.toml").write_text(
        '[holidays]\n"x" = { lunar = "08-30" }\n', encoding="utf-8"
    )
    with pytest.raises(StartupError, match=r"holidays.toml：节日「x」：lunar = 「08-30」不对"):
        await make(tmp_path)


async def test_a_broken_edit_keeps_the_last_good_calendar_and_tells_the_admins(
    tmp_path: Path,
) -> None:
    sim = await make(tmp_path)
    path = tmp_path / "cal" / "calendar.toml"
    path.write_text(DAILY.replace("0 9 * * *", "0 99 * * *"), encoding="utf-8")
    said = await advance_to(sim, at(sim, 9, 30))
    assert said.keys[0] == "calendar/reload_alert"
    assert "帖子 daily，字段 cron" in said.texts[0]
    assert len(posts(said)) == 2  # the last good version still published at 09:00
    assert (await advance_to(sim, at(sim, 10))).keys == []  # told once
    path.write_text(DAILY.replace("0 9 * * *", "0 11 * * *"), encoding="utf-8")
    fixed = await advance_to(sim, at(sim, 11, 30))
    assert [s.at.strftime("%H:%M") for s in fixed] == ["11:00", "11:00"]
    assert events(sim, "calendar.reloaded") == [{"posts": 1}]
    await sim.close()


# -- the operator's view -------------------------------------------------------------------------


async def test_the_upcoming_command_lists_a_week_of_posts(tmp_path: Path) -> None:
    sim = await make(tmp_path, DAILY + LAUNCH.replace("at = 2026-11-28", "at = 2026-12-20"))
    said = await sim.say("admin", "朋友圈计划")
    assert said.keys == ["calendar/upcoming"]
    listing = said.texts[0]
    for day in ("11月23日", "11月24日", "11月29日"):
        assert day in listing
    assert "11月30日" not in listing
    assert "winter tea" not in listing  # outside the week
    month = await sim.say("admin", "朋友圈计划 31")
    assert set(month.keys) == {"calendar/upcoming"}
    assert len(month.keys) == 3  # 31 daily posts + 5 launch steps, in pages of 12
    assert "winter tea" in "".join(month.texts)
    assert all(len(text) < 1500 for text in month.texts)  # nothing cut
    detail = await sim.say("admin", "朋友圈计划 winter.open")
    assert detail.keys == ["calendar/post_detail"]
    assert "shoumei" in detail.texts[0]
    assert (await sim.say("admin", "朋友圈计划 nope")).keys == ["calendar/post_unknown"]
    await sim.close()


async def test_a_post_in_full_says_when_in_chinese(tmp_path: Path) -> None:
    key_date = '[[post]]\nid = "moon"\nkey = "calendar/weekly_life"\non = "中秋"\ntime = "09:00"\n'
    sim = await make(tmp_path, DAILY + key_date + LAUNCH.replace("2026-11-28", "2026-12-12"))
    teaser = (await sim.say("admin", "朋友圈计划 winter.teaser")).texts[0]
    assert "时间：发布活动「winter tea」（2026年12月12日 20:00）前 3 天，当天 12:00" in teaser
    assert "T-3d" not in teaser and " of " not in teaser and " at " not in teaser
    opening = (await sim.say("admin", "朋友圈计划 winter.open")).texts[0]
    assert "（2026年12月12日 20:00）当时" in opening
    daily = (await sim.say("admin", "朋友圈计划 daily")).texts[0]
    assert "时间：按定时规则「0 9 * * *」" in daily
    moon = (await sim.say("admin", "朋友圈计划 moon")).texts[0]
    assert "时间：每年中秋（农历八月十五） 09:00" in moon
    await sim.close()


async def test_scheduled_posts_for_the_daily_summary(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    await advance_to(sim, at(sim, 10))
    [today] = calendar_plugin.scheduled_posts(cal_ctx(sim), date(2026, 11, 23))
    assert today["post_id"] == "daily"
    assert today["time"] == "09:00"
    assert today["status"] == "published"
    assert today["modes"] == ["broadcast"]
    assert today["delivery"] == {"sent": 2}
    assert today["rooms"] == ["r1@chatroom", "r2@chatroom"]
    [tomorrow] = calendar_plugin.scheduled_posts(cal_ctx(sim), date(2026, 11, 24))
    assert tomorrow["status"] == "scheduled"
    await sim.close()


async def test_the_shipped_calendar_loads_and_the_preview_script_shows_a_week() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/calendar_preview.py", "--from", "2026-12-07"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "12-09 12:00  winter_tea.teaser" in out
    assert "12-12 18:00  winter_tea.countdown" in out
    assert "12-12 20:00  winter_tea.open" in out
    assert "12-07 09:30  mon_product" in out
    assert "12-14" not in out  # one week
    assert "变体 2/2" in out  # every variant is shown


async def test_the_preview_script_fails_on_a_bad_calendar(tmp_path: Path) -> None:
    path = write(tmp_path, '[[post]]\nid = "bad"\nkey = "calendar/nope"\ncron = "0 9 * * *"\n')
    result = subprocess.run(
        [sys.executable, "scripts/calendar_preview.py", "--file", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "帖子 bad，字段 key" in result.stderr


def test_the_plugin_does_not_shadow_the_standard_calendar_module() -> None:
    import calendar
    import importlib

    assert importlib.import_module("plugins.calendar") is calendar_plugin
    assert calendar.__file__ is not None and "plugins" not in Path(calendar.__file__).parts
    assert calendar.isleap(2028)


async def test_a_pending_staff_post_is_still_reminded_after_a_restart(tmp_path: Path) -> None:
    sim = await make(tmp_path, fallback="staff")
    await advance_to(sim, at(sim, 9, 30))
    await sim.restart()
    later = await advance_to(sim, at(sim, 12))
    assert later.keys == ["calendar/staff_reminder"]
    assert calendar_plugin.pending_staff_posts(cal_ctx(sim))[0]["post_id"] == "daily"
    await sim.close()


async def test_a_bad_fallback_setting_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CALENDAR_FALLBACK"):  # the declared choices
        await make(tmp_path, fallback="email")


async def test_with_the_tick_off_the_calendar_lists_but_publishes_nothing(tmp_path: Path) -> None:
    sim = await make(tmp_path, JOB_CALENDAR_TICK_CRON="off", start=datetime(2026, 11, 23, 9, 5))
    assert posts(await advance_to(sim, at(sim, 10))) == []  # not even the catch-up at start
    assert (await sim.say("admin", "朋友圈计划")).keys == ["calendar/upcoming"]
    await sim.close()


async def test_a_yearly_launch_on_a_key_date_repeats_every_year(tmp_path: Path) -> None:
    text = (
        '[[launch]]\nid = "d11"\non = "双11"\ntime = "10:00"\n'
        '[[launch.step]]\nid = "warm"\noffset = "T-3d"\ntime = "20:00"\n'
        'key = "calendar/weekly_life"\n'
    )
    sim = await make(tmp_path, text)
    for year in (2027, 2028):
        [step] = calendar_plugin.scheduled_posts(cal_ctx(sim), date(year, 11, 8))
        assert (step["post_id"], step["time"], step["launch"]) == ("d11.warm", "20:00", "d11")
    await sim.close()
