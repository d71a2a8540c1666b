"""The headless-Chromium helper (tests/browser.py) on small pages written for each test."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from browser import check_page, chromium_path, requires_chromium


def write_page(tmp_path: Path, body: str, title: str = "测试页") -> Path:
    page = tmp_path / "page.html"
    page.write_text(
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title>'
        f"</head><body>{body}</body></html>",
        encoding="utf-8",
    )
    return page


BAR_CHART = """
<h1>每日新增好友</h1>
<svg class="chart" aria-label="新增好友" width="320" height="160" viewBox="0 0 320 160">
  <line x1="0" y1="150" x2="320" y2="150" stroke="#333"/>
  <rect x="10" y="50" width="30" height="100" fill="steelblue"/>
  <rect x="50" y="90" width="30" height="60" fill="steelblue"/>
  <rect x="90" y="150" width="30" height="0" fill="steelblue"/>
  <circle cx="200" cy="80" r="5"/>
</svg>
<svg width="10" height="10"><rect width="10" height="10"/></svg>
"""


@requires_chromium
def test_good_page_counts_marks_and_writes_screenshot(tmp_path: Path) -> None:
    shot = tmp_path / "shots" / "page.png"
    result = check_page(write_page(tmp_path, BAR_CHART), shot)

    assert result.console_errors == []
    assert result.console_warnings == []
    assert result.page_errors == []
    assert result.requests_outside == []
    assert result.title == "测试页"
    assert "每日新增好友" in result.text
    # The undecorated <svg> is not a chart; the zero-height bar is not a drawn mark.
    assert result.charts == [
        {"kind": "svg", "label": "新增好友", "width": 320, "height": 160, "marks": 4}
    ]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000


@requires_chromium
def test_canvas_counts_painted_pixels(tmp_path: Path) -> None:
    body = """
    <canvas id="drawn" aria-label="已绘制" width="40" height="20"></canvas>
    <canvas id="blank" width="40" height="20"></canvas>
    <script>
      window.addEventListener("load", () => {
        document.getElementById("drawn").getContext("2d").fillRect(0, 0, 5, 4);
      });
    </script>
    """
    charts = check_page(write_page(tmp_path, body)).charts

    assert [(c["kind"], c["label"], c["marks"]) for c in charts] == [
        ("canvas", "已绘制", 20),
        ("canvas", "", 0),
    ]


@requires_chromium
def test_console_error_and_uncaught_exception_are_reported(tmp_path: Path) -> None:
    body = """
    <script>
      console.warn("只是提醒");
      console.error("图表数据缺失");
      window.undefinedChart.draw();
    </script>
    """
    result = check_page(write_page(tmp_path, body))

    assert result.console_errors == ["图表数据缺失"]
    assert result.console_warnings == ["只是提醒"]
    assert len(result.page_errors) == 1
    assert result.page_errors[0].startswith("TypeError: ")
    assert "draw" in result.page_errors[0]


@requires_chromium
def test_remote_script_is_blocked_and_listed(tmp_path: Path) -> None:
    body = """
    <svg class="chart" aria-label="趋势" width="100" height="50"></svg>
    <script src="https://cdn.example.com/x.js"></script>
    <script>document.title = "加载完成";</script>
    """
    result = check_page(write_page(tmp_path, body))

    assert result.requests_outside == ["https://cdn.example.com/x.js"]
    # The script after the blocked one ran: the page went on loading instead of waiting.
    assert result.title == "加载完成"
    # Chromium also logs the aborted load, so a CDN reference fails a no-console-errors check.
    assert any("ERR_FAILED" in error for error in result.console_errors)


@requires_chromium
def test_empty_chart_has_no_marks(tmp_path: Path) -> None:
    body = '<svg class="chart" aria-label="空图表" width="200" height="100"></svg>'
    result = check_page(write_page(tmp_path, body))

    assert result.charts == [
        {"kind": "svg", "label": "空图表", "width": 200, "height": 100, "marks": 0}
    ]
    assert result.console_errors == []


@requires_chromium
def test_missing_file_raises(tmp_path: Path) -> None:
    from playwright.sync_api import Error

    with pytest.raises(Error, match="ERR_FILE_NOT_FOUND"):
        check_page(tmp_path / "absent.html")


def test_chromium_path_prefers_pond_chromium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "my-chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("POND_CHROMIUM", str(fake))
    assert chromium_path() == str(fake)

    # A stale setting pointing nowhere falls back to the usual places instead of failing.
    monkeypatch.setenv("POND_CHROMIUM", str(tmp_path / "gone"))
    monkeypatch.setenv("PATH", str(tmp_path))
    expected = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    assert chromium_path() == expected
