"""The copywriters' preview page: every key grouped by plugin, a contents list and a search
box, checked in headless Chromium as a copywriter would use it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from browser import CHROMIUM_ARGS, check_page, chromium_path, requires_chromium

ROOT = Path(__file__).resolve().parent.parent


def write_preview(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "persona_preview.py"), "--html", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "POND_NO_VENV": "1"},
        cwd=ROOT,
    )


def test_preview_page_groups_keys_by_plugin_with_contents_and_search(tmp_path: Path) -> None:
    out = tmp_path / "preview.html"
    result = write_preview(out)
    assert result.returncode == 0, result.stderr
    assert f"已写入 {out}" in result.stdout
    page = out.read_text(encoding="utf-8")
    for plugin in ("admin", "auto_reply", "calendar", "friends", "greeter", "groups"):
        assert f'<details class="plugin" id="group-{plugin}">' in page
    assert "<nav><h2>目录</h2>" in page and 'data-key="greeter/hello"' in page
    assert '<input id="search"' in page
    assert "http://" not in page.split("<script>")[1]  # no CDN: the script is inline


@requires_chromium
def test_preview_page_in_chromium_is_short_and_search_finds_copy(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    out = tmp_path / "preview.html"
    assert write_preview(out).returncode == 0
    checked = check_page(out, tmp_path / "preview.png")
    assert checked.console_errors == [] and checked.page_errors == []
    assert checked.requests_outside == []
    assert checked.title == "人设文案预览"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(out.resolve().as_uri(), wait_until="load")
            # Folded by plugin: the page opens as a short list, not 59,000 px of bubbles.
            assert page.evaluate("document.documentElement.scrollHeight") < 4000
            total = page.locator("section.key").count()
            assert page.inner_text("#found") == f"共 {total} 个"
            # A copywriter looks for the welcome copy by a word in it.
            page.fill("#search", "热烈欢迎")
            assert page.inner_text("#found") == "找到 1 个"
            assert page.locator("section.key:not(.hidden)").get_attribute("id") == "groups/welcome"
            assert page.locator("#group-groups").get_attribute("open") is not None
            assert page.locator("#group-admin").is_hidden()
            page.fill("#search", "")
            assert page.inner_text("#found") == f"共 {total} 个"
            # The contents list opens the key's group and goes there.
            page.click('nav a[data-key="greeter/hello"]')
            assert page.locator("#group-greeter").get_attribute("open") is not None
            assert page.locator('[id="greeter/hello"]').is_visible()
        finally:
            browser.close()
