"""Open an offline HTML page in headless Chromium and report what a person would see go wrong.

Drives Debian's Chromium through Playwright's Python client: `playwright install` cannot
download Playwright's own browser builds here (only the package registries are reachable), so
the browser comes from apt (`python3 scripts/test.py` installs it as root and exports its path
as POND_CHROMIUM)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# --no-sandbox: CI runs as root, where Chromium refuses to start sandboxed. The networking
# flags stop Chromium's own background traffic, which the closed network answers with floods
# of refused connections.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# The report must work from disk with no network: anything else is a CDN or tracker.
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")
TIMEOUT_MS = 30_000

# Marks whose box may legitimately be flat (a horizontal gridline, a straight path) count when
# either side is non-zero; filled shapes need both, so a zero-height bar is not a drawn mark.
_MEASURE_CHARTS = """
() => {
  const flat = new Set(["line", "path", "polyline", "polygon"]);
  const shapes = "rect, path, circle, ellipse, line, polyline, polygon";
  return Array.from(document.querySelectorAll("svg.chart, canvas")).map((el) => {
    const box = el.getBoundingClientRect();
    const chart = {
      kind: el.tagName.toLowerCase(),
      label: el.getAttribute("aria-label") || "",
      width: Math.round(box.width),
      height: Math.round(box.height),
      marks: 0,
    };
    if (el instanceof HTMLCanvasElement) {
      // Copy onto a fresh 2d canvas so a canvas drawn with any context can be read the same way.
      if (el.width > 0 && el.height > 0) {
        try {
          const copy = document.createElement("canvas");
          copy.width = el.width;
          copy.height = el.height;
          const ctx = copy.getContext("2d");
          ctx.drawImage(el, 0, 0);
          const pixels = ctx.getImageData(0, 0, el.width, el.height).data;
          for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) chart.marks++;
        } catch (error) {
          chart.error = String(error);
        }
      }
      return chart;
    }
    for (const mark of el.querySelectorAll(shapes)) {
      const b = mark.getBoundingClientRect();
      const name = mark.tagName.toLowerCase();
      if (flat.has(name) ? b.width > 0 || b.height > 0 : b.width > 0 && b.height > 0) {
        chart.marks++;
      }
    }
    return chart;
  });
}
"""
# Charts drawn from a load handler or requestAnimationFrame land within two frames of `load`.
_TWO_FRAMES = (
    "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
)


@dataclass(frozen=True)
class PageCheck:
    console_errors: list[str]  # console messages of type "error"
    console_warnings: list[str]  # of type "warning": reported apart, a page may have some
    page_errors: list[str]  # uncaught exceptions, "Name: message"
    requests_outside: list[str]  # URLs not file:/data:/about:/blob:, blocked and listed
    # One per <svg class="chart"> and <canvas>, in document order: kind ("svg"/"canvas"),
    # label (aria-label), width and height (CSS px) and marks: for an SVG the drawn
    # rect/path/circle/ellipse/line/polyline/polygon elements, for a canvas the non-transparent
    # pixels ("error" is set if the canvas could not be read).
    charts: list[dict[str, Any]]
    title: str
    text: str  # document.body.innerText: the headings and labels a reader sees


def chromium_path() -> str | None:
    """POND_CHROMIUM, else Debian's /usr/bin/chromium, else chromium(-browser) on PATH."""
    for candidate in (os.environ.get("POND_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def playwright_installed() -> bool:
    return importlib.util.find_spec("playwright") is not None


def _missing() -> str | None:
    if not playwright_installed():
        return "needs the playwright package (requirements-dev.txt)"
    if chromium_path() is None:
        return "needs Chromium (python3 scripts/test.py installs it as root)"
    return None


requires_chromium = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def check_page(html: Path, screenshot: Path | None = None, *, width: int = 1280) -> PageCheck:
    """Load `html` from disk in a fresh headless Chromium and measure it.

    Every request that is not local is aborted (so a CDN reference fails fast instead of
    hanging) and listed. With `screenshot`, a full-page PNG is written there."""
    from playwright.sync_api import ConsoleMessage, Error, Request, Route, sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError(_missing())
    errors: list[str] = []
    warnings: list[str] = []
    page_errors: list[str] = []
    outside: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)
        elif message.type == "warning":
            warnings.append(message.text)

    def on_page_error(error: Error) -> None:
        page_errors.append(f"{error.name}: {error.message}")

    def on_request(route: Route, request: Request) -> None:
        if request.url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            outside.append(request.url)
            route.abort()

    with sync_playwright() as playwright:
        # launch() gives every run its own temporary profile, removed on close.
        browser = playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": 800})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("console", on_console)
            page.on("pageerror", on_page_error)
            # WebSockets bypass page.route, so they are recorded here (the network refuses them).
            page.on("websocket", lambda socket: outside.append(socket.url))
            page.route("**/*", on_request)
            page.goto(html.resolve().as_uri(), wait_until="load")
            page.evaluate(_TWO_FRAMES)
            charts: list[dict[str, Any]] = page.evaluate(_MEASURE_CHARTS)
            title = page.title()
            text: str = page.evaluate("() => document.body ? document.body.innerText : ''")
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return PageCheck(
        console_errors=errors,
        console_warnings=warnings,
        page_errors=page_errors,
        requests_outside=outside,
        charts=charts,
        title=title,
        text=text,
    )
