"""Web admin (运营后台) in headless Chromium: what an owner and a staff member do on a phone
and on a desktop. The bot and its web server run in the test's event loop; Chromium talks
to the real server over loopback (Playwright's async API, Debian's Chromium)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMIUM_ARGS, chromium_path, requires_chromium
from harness import ROOT, ChatSim
from webclient import PASSWORD, PLUGINS, base_url, boot, setup_url

pytestmark = requires_chromium

NO_OVERFLOW = "() => document.documentElement.scrollWidth <= window.innerWidth"


class Browser:
    """One Chromium page; every request that leaves our server is blocked and listed, and
    console errors (a CSP violation is one) are kept."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.outside: list[str] = []
        self.errors: list[str] = []

    async def open(self, path: str) -> None:
        await self.page.goto(base_url() + path, wait_until="load")

    async def fill_and_submit(self, fields: dict[str, str], button: str) -> None:
        for name, value in fields.items():
            await self.page.fill(f'[name="{name}"]', value)
        async with self.page.expect_navigation():
            await self.page.click(f'button:has-text("{button}")')

    async def text(self) -> str:
        found: str = await self.page.inner_text("body")
        return found

    async def fits(self) -> bool:
        return bool(await self.page.evaluate(NO_OVERFLOW))


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await boot(tmp_path)
    yield chat
    await chat.close()


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_browser(chromium: Any, width: int = 390) -> Browser:
    context = await chromium.new_context(viewport={"width": width, "height": 844})
    page = await context.new_page()
    page.set_default_timeout(15_000)
    seen = Browser(page)
    local = base_url()

    async def route(request_route: Any, request: Any) -> None:
        if request.url.startswith(local):
            await request_route.continue_()
        else:
            seen.outside.append(request.url)
            await request_route.abort()

    await page.route("**/*", route)

    def on_console(message: Any) -> None:
        # A 401/429 page is an answer, not a fault; a CSP violation ("Refused to ...") is.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            seen.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: seen.errors.append(str(e)))
    return seen


async def setup_owner(b: Browser) -> None:
    await b.page.goto(setup_url(), wait_until="load")
    assert "创建店主账号" in await b.text()
    fields = {"name": "店主", "password": PASSWORD, "confirm": PASSWORD}
    await b.fill_and_submit(fields, "创建并登录")


async def test_setup_link_login_logout_and_lock_out(sim: ChatSim, chromium: Any) -> None:
    b = await new_browser(chromium)
    await setup_owner(b)
    assert b.page.url.endswith("/account")
    assert "在线" in await b.text() and "店主（店主）" in await b.text()

    async with b.page.expect_navigation():
        await b.page.click('button:has-text("退出登录")')
    assert b.page.url.endswith("/login?m=out") and "已退出登录" in await b.text()
    await b.open("/inbox")
    assert b.page.url.endswith("/login")  # no session: back to the login page

    for _ in range(4):
        await b.fill_and_submit({"name": "店主", "password": "wrong password"}, "登录")
        assert "名字或密码不对" in await b.text()
    await b.fill_and_submit({"name": "店主", "password": "wrong password"}, "登录")
    assert "已暂时锁定" in await b.text()
    await b.fill_and_submit({"name": "店主", "password": PASSWORD}, "登录")
    assert "已暂时锁定" in await b.text() and b.page.url.endswith("/login")

    sim.clock.advance(16 * 60)
    await b.fill_and_submit({"name": "店主", "password": PASSWORD}, "登录")
    assert b.page.url.endswith("/account")
    assert b.outside == [] and b.errors == []


async def test_a_hand_off_reply_typed_in_the_browser_reaches_the_customer(
    sim: ChatSim, chromium: Any
) -> None:
    b = await new_browser(chromium)
    await setup_owner(b)
    await sim.say("alice", "转人工")
    await b.open("/inbox")
    assert "#1 alice" in await b.text()
    before = len(sim.transport.performed)
    await b.fill_and_submit({"text": "您好，我是店员小林，这就帮您看"}, "发送")
    assert "回复已交给发送队列" in await b.text()
    await sim.driver.settle()
    [sent] = sim.transport.performed[before:]
    assert (sent.action.to, sent.action.key, sent.action.cls.value) == (
        "alice",
        "web/staff_reply",
        "reply",
    )
    assert sent.action.text == "您好，我是店员小林，这就帮您看"
    assert sim.app.pauses.reason("alice") == "takeover"
    assert (await sim.say("alice", "好的")).keys == []
    await b.open("/inbox")
    assert "已有人回复" in await b.text()
    assert b.outside == [] and b.errors == []


async def test_the_account_page_swaps_in_a_new_qr_after_a_logout(
    sim: ChatSim, chromium: Any, tmp_path: Path
) -> None:
    b = await new_browser(chromium)
    await setup_owner(b)
    png = tmp_path / "qr.png"
    png.write_bytes(QR_PNG)
    report = sim.transport.status_listener
    report("logout", {"name": "小美"})
    report("scan", {"status": "waiting", "qr_png": str(png)})
    img = b.page.locator("img.qr")
    await img.wait_for()  # poll.js brought it in without a reload
    first = await img.get_attribute("src")
    report("scan", {"status": "waiting", "qr_png": str(png)})
    await b.page.wait_for_function(
        "(src) => document.querySelector('img.qr') && "
        "document.querySelector('img.qr').getAttribute('src') !== src",
        arg=first,
    )
    assert "需要扫码登录" in await b.text()
    # The new image decodes (a broken or refused image would never get a width).
    await b.page.wait_for_function(
        "() => { const img = document.querySelector('img.qr'); "
        "return img && img.complete && img.naturalWidth > 0; }"
    )
    assert b.outside == [] and b.errors == []


async def test_pages_fit_a_phone_and_a_desktop(sim: ChatSim, chromium: Any, tmp_path: Path) -> None:
    await sim.say("alice", "转人工")
    owner = await new_browser(chromium)
    await setup_owner(owner)
    cookies = await owner.page.context.cookies()
    for width in (390, 1280):
        b = await new_browser(chromium, width)
        await b.page.context.add_cookies(cookies)
        for path in PAGES:
            await b.open(path)
            shot = tmp_path / f"{path.strip('/').replace('/', '-').split('?')[0]}-{width}.png"
            await b.page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes().startswith(b"\x89PNG")
            assert await b.fits(), f"{path} overflows at {width} px"
        await b.page.context.clear_cookies()
        await b.open("/login")
        assert await b.fits(), f"/login overflows at {width} px"
        assert b.outside == [] and b.errors == []


PAGES = (
    "/account",
    "/inbox",
    "/customers?q=alice",
    "/customers/view?id=alice",
    "/persona",
    "/persona/edit?key=greeter/hello",
    "/settings",
    "/users",
    "/broadcasts",
)


async def test_a_broken_template_is_refused_in_the_editor_with_its_line(
    tmp_path: Path, chromium: Any
) -> None:
    shutil.copytree(ROOT / "persona", tmp_path / "persona")
    chat = await boot(tmp_path, BOT_PERSONA_DIR=str(tmp_path / "persona"))
    try:
        b = await new_browser(chromium)
        await setup_owner(b)
        await b.open("/persona?q=hello")
        async with b.page.expect_navigation():
            await b.page.click('a:has-text("greeter/hello")')
        source = await b.page.input_value("textarea")
        broken = source.replace("{{ voice.menu }}", "{{ voice.menu ", 1)
        await b.page.fill("textarea", broken)
        async with b.page.expect_navigation():
            await b.page.click('button:has-text("检查并保存")')
        text = await b.text()
        assert "模板有错，没有保存" in text and "persona/greeter/hello.j2:5" in text
        file = tmp_path / "persona" / "greeter" / "hello.j2"
        assert file.read_text(encoding="utf-8") == source
        assert await b.page.input_value("textarea") == broken  # the edit is kept to fix
        assert await b.fits() and b.outside == [] and b.errors == []
    finally:
        await chat.close()


async def test_a_broadcast_created_dry_run_confirmed_and_watched_to_its_report(
    tmp_path: Path, chromium: Any
) -> None:
    chat = await ChatSim.create(
        tmp_path / "data",
        plugins=[*PLUGINS, "broadcasts"],
        env={"WEB_PORT": "0", "BROADCASTS_CAMPAIGNS_DIR": str(tmp_path / "c")},
    )
    try:
        now = chat.clock.now()
        for i in range(4):
            chat.app.book.upsert(f"c{i}", now, name=f"客户{i}")
            chat.app.book.tag(f"c{i}", ("vip",), now)
        b = await new_browser(chromium)
        await setup_owner(b)
        await b.open("/broadcasts")
        await b.page.fill('[name="id"]', "tea")
        await b.page.fill('[name="title"]', "新茶上新")
        await b.page.fill('[name="segment"]', "vip")
        await b.page.select_option('[name="copy"]', "broadcasts/copy_new_tea")
        await b.page.fill('[name="vars"]', "product = 桂花乌龙\nprice = 68")
        async with b.page.expect_navigation():
            await b.page.click('button:has-text("创建（不发送）")')
        assert "群发 tea" in await b.text() and await b.fits()

        async with b.page.expect_navigation():
            await b.page.click('button:has-text("预览（不发送）")')
        text = await b.text()
        assert "群发预览" in text and "实际发送：4 人" in text and "客户" in text
        assert await b.fits()
        await b.page.fill('[name="count"]', "4")
        async with b.page.expect_navigation():
            await b.page.click('button:has-text("确认并开始群发")')
        await b.page.wait_for_function(  # poll.js brings the status in
            "() => document.querySelector('#live').innerText.includes('tea')"
        )
        await chat.advance(1800)  # the outbox drains on the simulated clock
        await b.page.wait_for_function(
            "() => document.querySelector('#live').innerText.includes('已完成')"
        )
        assert "4/4" in await b.page.inner_text("#live")
        async with b.page.expect_navigation():
            await b.page.click('a:has-text("查看报告")')
        report = await b.text()
        assert "群发报告" in report and "已发送 4" in report
        await b.open("/broadcasts")  # the list with its live progress, at 390 px
        await b.page.wait_for_function(
            "() => document.querySelector('#live').innerText.includes('新茶上新')"
        )
        assert await b.fits()
        sent = [p.action.to for p in chat.transport.performed if p.action.job == "broadcasts.tea"]
        assert sorted(sent) == ["c0", "c1", "c2", "c3"]
        assert await b.fits() and b.outside == [] and b.errors == []
    finally:
        await chat.close()


CALENDAR = """
[[post]]
id = "daily"
title = "每日茶室"
key = "calendar/weekly_life"
cron = "0 9 * * *"
images = ["media/a.png"]
"""


async def test_the_new_pages_fit_a_phone_and_a_desktop_with_content(
    tmp_path: Path, chromium: Any
) -> None:
    """群发, 待处理 with every kind of item, 内容日历 and 报表, filled, at 390 and 1280 px."""
    folder = tmp_path / "cal"
    (folder / "media").mkdir(parents=True)
    (folder / "media" / "a.png").write_bytes(QR_PNG)
    (folder / "calendar.toml").write_text(CALENDAR, encoding="utf-8")
    shutil.copy(ROOT / "persona" / "calendar" / "holidays.toml", folder / "holidays.toml")
    chat = await ChatSim.create(
        tmp_path / "data",
        plugins=[*PLUGINS, "broadcasts", "calendar", "analytics"],
        env={
            "WEB_PORT": "0",
            "BROADCASTS_CAMPAIGNS_DIR": str(tmp_path / "c"),
            "CALENDAR_FILE": str(folder / "calendar.toml"),
            "CALENDAR_FALLBACK": "staff",
        },
        start=datetime(2026, 11, 23, 8, 0),
    )
    try:
        owner = await new_browser(chromium)
        await setup_owner(owner)
        await chat.friend_request("erin", "你好呀" * 30)
        await chat.advance(90 * 60)  # the 09:00 post is handed to staff
        await owner.open("/broadcasts")
        await owner.page.fill('[name="id"]', "tea")
        await owner.page.fill('[name="segment"]', "vip and not churned")
        await owner.page.fill('[name="vars"]', "product = 桂花乌龙\nprice = 68")
        async with owner.page.expect_navigation():
            await owner.page.click('button:has-text("创建（不发送）")')
        await owner.open("/reports")
        async with owner.page.expect_navigation():
            await owner.page.click('button:has-text("最近 7 天")')
        assert "运营报表" in await owner.text()
        cookies = await owner.page.context.cookies()
        for width in (390, 1280):
            b = await new_browser(chromium, width)
            await b.page.context.add_cookies(cookies)
            for path in (
                "/inbox",
                "/broadcasts",
                "/broadcasts/view?id=tea",
                "/broadcasts/report?id=tea",
                "/calendar?days=31",
                "/calendar/post?id=daily",
                "/reports",
            ):
                await b.open(path)
                assert await b.fits(), f"{path} overflows at {width} px"
            await b.open("/broadcasts/view?id=tea")
            async with b.page.expect_navigation():
                await b.page.click('button:has-text("预览（不发送）")')
            assert "群发预览" in await b.text() and await b.fits()
            assert b.outside == [] and b.errors == []
    finally:
        await chat.close()


# A 1x1 white PNG: enough for the browser to decode the QR image.
QR_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c6360000000020001e221bc330000000049454e44ae426082"
)
