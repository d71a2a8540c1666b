"""运营后台截图：启动一个带运营后台的机器人（内存里的演示微信号、临时数据目录），
用无头 Chromium 打开各页，手机宽度（390 px）和电脑宽度（1280 px）各截一张，写进 docs/。
改了页面以后重跑一次，README「运营后台」里的图就是新的。

    python3 scripts/web_screenshots.py              写到 docs/web-*.png
    python3 scripts/web_screenshots.py --out 目录    写到别的目录

需要 playwright（requirements-dev.txt）和 Chromium（python3 scripts/test.py 会装）。
页面在某个宽度下出现横向滚动条时报错退出（退出码 1）。"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import ROOT, ensure_venv

if __name__ == "__main__":
    ensure_venv(dev=True)

import argparse
import asyncio
import random
import re
import tempfile
from datetime import datetime

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import plugins
from plugins._web import server
from pond import App, Contact, FakeClock, Message, Settings
from pond.simulation import SimDriver
from pond.transports.memory import MemoryTransport

PASSWORD = "screenshot-only-password"
# (page, widths, whole page?): the settings page lists every setting; its top is enough.
SHOTS = (
    ("login", "/login", (390, 1280), True),
    ("account", "/account", (390, 1280), True),
    ("inbox", "/inbox", (390, 1280), True),
    ("customer", "/customers/view?id=c1", (390,), True),
    ("persona", "/persona/edit?key=greeter/hello", (390, 1280), True),
    ("settings", "/settings", (390,), False),
    ("broadcasts", "/broadcasts", (390,), True),
    ("calendar", "/calendar?days=14", (390, 1280), True),
)
NO_OVERFLOW = "() => document.documentElement.scrollWidth <= window.innerWidth"


async def demo_app(data_dir: Path) -> App:
    clock = FakeClock(datetime(2026, 11, 23, 10, 0))
    env = {
        "BOT_DATA_DIR": str(data_dir),
        "BOT_PERSONA_DIR": str(ROOT / "persona"),
        "BOT_PLUGINS": "auto_reply,admin,friends,broadcasts,calendar,web",
        "BOT_ADMIN_IDS": "admin",
        "BOT_LOG_LEVEL": "WARNING",
        "WEB_PORT": "0",
    }
    settings = Settings.from_mapping(env)
    app = App(settings, MemoryTransport(clock.now), clock=clock, rng=random.Random(1))
    for plugin in plugins.load(settings.bot.plugins):
        app.include(plugin)
    await app.start()
    for n, name in enumerate(("王女士", "李先生"), start=1):
        await app.dispatch(
            Message(id=f"m{n}", sender=Contact(f"c{n}", name), text="转人工", timestamp=clock.now())
        )
    for n in range(1, 7):  # the 群发 example new_tea goes to "vip and not churned"
        app.book.upsert(f"v{n}", clock.now(), name=f"老客{n}")
        app.book.tag(f"v{n}", ("vip",), clock.now())
    await SimDriver(app, clock).settle()
    return app


def shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


async def shoot(out: Path) -> list[str]:
    from browser import CHROMIUM_ARGS, chromium_path
    from playwright.async_api import async_playwright

    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pond-shots-") as folder:
        app = await demo_app(Path(folder))
        running = server.running()
        assert running is not None
        base = running.local
        link = re.search(r"(https?://\S+/setup/[\w-]+)", running.setup_line)
        assert link is not None
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=chromium_path(), args=list(CHROMIUM_ARGS), headless=True
                )
                context = await browser.new_context(viewport={"width": 390, "height": 844})
                page = await context.new_page()
                await page.goto(link.group(1))
                await page.fill('[name="name"]', "店主")
                await page.fill('[name="password"]', PASSWORD)
                await page.fill('[name="confirm"]', PASSWORD)
                async with page.expect_navigation():
                    await page.click("button[type=submit]")
                # 群发: the shipped example campaign, created and dry-run on its page.
                await page.goto(base + "/broadcasts/view?id=new_tea")
                for button in ("按活动文件重新创建", "预览（不发送）"):
                    async with page.expect_navigation():
                        await page.click(f'button:has-text("{button}")')
                path = out / "web-broadcast-390.png"
                await page.screenshot(path=str(path), full_page=True)
                if not await page.evaluate(NO_OVERFLOW):
                    problems.append("broadcast 在 390 px 宽时出现横向滚动")
                print(f"已写入 {shown(path)}")
                cookies = await context.cookies()
                for name, where, widths, full in SHOTS:
                    for width in widths:
                        shot = await browser.new_context(
                            viewport={"width": width, "height": 844 if width < 800 else 760}
                        )
                        if name != "login":
                            await shot.add_cookies(cookies)
                        view = await shot.new_page()
                        await view.goto(base + where, wait_until="load")
                        path = out / f"web-{name}-{width}.png"
                        await view.screenshot(path=str(path), full_page=full)
                        if not await view.evaluate(NO_OVERFLOW):
                            problems.append(f"{name} 在 {width} px 宽时出现横向滚动")
                        print(f"已写入 {shown(path)}")
                        await shot.close()
                await browser.close()
        finally:
            await app.stop()
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="web_screenshots.py",
        description="给运营后台各页截图（手机和电脑宽度），写进 docs/",
    )
    parser.add_argument("--out", metavar="目录", default=str(ROOT / "docs"), help="截图目录")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = asyncio.run(shoot(out))
    for problem in problems:
        print(f"！{problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
