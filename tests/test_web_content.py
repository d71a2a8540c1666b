"""内容日历 and 报表 in the web admin: the calendar's and analytics' own commands, their
answers on the page, a post in full with its pictures, and the HTML report served behind
login with nothing fetched from outside."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from harness import ROOT, ChatSim
from webclient import (
    add_user,
    client,
    hidden,
    login,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
CALENDAR = """
[[post]]
id = "daily"
title = "每日茶室"
key = "calendar/weekly_life"
cron = "0 9 * * *"
images = ["media/a.png"]

[[post]]
id = "mid_autumn"
title = "中秋"
key = "calendar/mid_autumn"
on = "中秋"
time = "09:00"
"""
MON_0800 = datetime(2026, 11, 23, 8, 0)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    folder = tmp_path / "cal"
    (folder / "media").mkdir(parents=True)
    (folder / "media" / "a.png").write_bytes(PNG)
    (folder / "calendar.toml").write_text(CALENDAR, encoding="utf-8")
    shutil.copy(ROOT / "persona" / "calendar" / "holidays.toml", folder / "holidays.toml")
    chat = await ChatSim.create(
        tmp_path / "data",
        plugins=["auto_reply", "admin", "friends", "calendar", "analytics", "web"],
        env={
            "WEB_PORT": "0",
            "CALENDAR_FILE": str(folder / "calendar.toml"),
            "CALENDAR_FALLBACK": "staff",
        },
        start=MON_0800,
    )
    yield chat
    await chat.close()


async def test_the_calendar_shows_the_coming_posts_key_dates_and_a_post_in_full(
    owner: httpx.AsyncClient,
) -> None:
    month = await owner.get("/calendar")
    assert month.status_code == 200 and "接下来 31 天的朋友圈计划" in month.text
    assert "节日：中秋" in month.text  # the key dates the file names
    # The month grid: from Monday 2026-11-23 (today, 08:00) to 12-24, the 09:00 post daily.
    cells = re.findall(r'data-day="([0-9-]+)">(.*?)</div>', month.text, re.S)
    assert cells[0][0] == "2026-11-23" and len(cells) % 7 == 0
    days = {day: body for day, body in cells}
    assert "09:00 每日茶室" in days["2026-11-24"] and "09:00 每日茶室" in days["2026-12-20"]
    assert "每日茶室" not in days.get("2026-12-26", "")  # past the 31-day window
    assert 'href="/calendar/post?id=daily"' in days["2026-11-24"]
    week = await owner.get("/calendar", params={"days": "7"})
    assert "接下来 7 天" in week.text
    short = dict(re.findall(r'data-day="([0-9-]+)">(.*?)</div>', week.text, re.S))
    assert "每日茶室" in short["2026-11-29"] and "每日茶室" not in short["2026-11-30"]
    assert "2026-12-20" not in short
    assert "接下来 31 天" in (await owner.get("/calendar", params={"days": "400"})).text
    post = await owner.get("/calendar/post", params={"id": "daily"})
    assert post.status_code == 200 and "「每日茶室」（daily）" in post.text
    assert "文案" in post.text and "下载 a.png" in post.text
    picture = await owner.get("/inbox/picture", params={"post": "daily", "n": "0"})
    assert picture.content == PNG
    missing = await owner.get("/calendar/post", params={"id": "../calendar"})
    assert missing.status_code == 404


async def test_the_report_is_made_by_its_command_and_served_behind_login(
    sim: ChatSim, owner: httpx.AsyncClient
) -> None:
    await sim.say("alice", "你好")
    page = await owner.get("/reports")
    assert page.status_code == 200 and "最近 7 天" in page.text
    made = await owner.post("/reports/make", data={"csrf": hidden(page.text), "days": "7"})
    assert made.status_code == 200 and "【运营报表】已生成" in made.text
    assert str(sim.data_dir) not in made.text  # the page links to the file instead
    found = re.search(r'href="/reports/file\?r=([^"]+)"', made.text)
    assert found, made.text
    report = await owner.get(f"/reports/file?r={found.group(1)}")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "sandbox" in report.headers["content-security-policy"]
    assert "script-src" not in report.headers["content-security-policy"]
    assert not re.search(r'(src|href)="(https?:)?//', report.text)  # nothing from outside
    ranged = await owner.post(
        "/reports/make",
        data={"csrf": hidden(page.text), "since": "2026-11-01", "until": "2026-11-23"},
    )
    folder = re.search(r'href="/reports/file\?r=([^"]+)"', ranged.text)
    assert folder and folder.group(1).startswith("2026-11-01_2026-11-23")
    bad = await owner.post(
        "/reports/make", data={"csrf": hidden(page.text), "since": "2026-11-30", "until": "x"}
    )
    assert bad.status_code == 400 and "日期要写成" in bad.text
    for name in ("../data", "..", ".hidden", "a/b"):
        assert (await owner.get("/reports/file", params={"r": name})).status_code == 404
    async with client() as stranger:
        assert (await stranger.get(f"/reports/file?r={found.group(1)}")).status_code == 303
    await add_user(owner, "小林", "staff")
    async with client() as staff:
        await login(staff, "小林")
        shown = await staff.get("/reports")
        assert "生成报表需要运营或店主角色" in shown.text
        refused = await staff.post("/reports/make", data={"csrf": hidden(shown.text), "days": "7"})
        assert refused.status_code == 403
        assert (await staff.get(f"/reports/file?r={found.group(1)}")).status_code == 200
