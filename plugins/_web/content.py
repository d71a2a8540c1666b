"""内容日历 and 报表 pages, through the calendar's and analytics' own commands.

内容日历: the calendar's upcoming_posts command for the next 7, 14 or 31 days (its limit),
the posts the calendar file lists with their key dates, and one post in full (the same
command with the post's id) with its pictures to download.

报表: the analytics_report command with its filters (last N days, or a date range); the
HTML file it writes under <data dir>/reports/ is served here behind login, with a CSP of
its own that allows its inline styles and nothing else (no script, sandboxed)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from plugins._web import kernel
from plugins._web.app import page, web_of

DAYS = (7, 14, 31)
REPORT_DAYS = (7, 30, 90)
_FOLDER = re.compile(r"^[0-9A-Za-z_.-]{1,120}$")
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'; sandbox"
)


def _who(request: Request) -> Any:
    user = request.state.session.user
    return kernel.operator(user.id, user.name)


def _texts(answers: list[tuple[str, str]]) -> list[str]:
    return [text.strip() for _key, text in answers if text.strip()]


# -- 内容日历 -------------------------------------------------------------------------------------


def _when(item: dict[str, Any]) -> date | None:
    at = item.get("at")
    if isinstance(at, datetime):
        return at.date()
    try:
        return datetime.fromisoformat(str(at)).date()
    except ValueError:
        return None


def month_grid(today: date, days: int, items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Weeks (Monday first) from this week to the end of the window, each day with the
    posts the calendar's answer lists for it."""
    by_day: dict[date, list[dict[str, Any]]] = {}
    for item in items:
        day = _when(item)
        if day is not None:
            by_day.setdefault(day, []).append(item)
    first = today - timedelta(days=today.weekday())
    last = today + timedelta(days=days)
    weeks = []
    while first <= last:
        week = []
        for n in range(7):
            day = first + timedelta(days=n)
            week.append(
                {
                    "day": day.day,
                    "month": day.month,
                    "iso": day.isoformat(),
                    "today": day == today,
                    "outside": day < today or day > last,
                    "posts": by_day.get(day, []),
                }
            )
        weeks.append(week)
        first += timedelta(days=7)
    return weeks


@page("viewer")
async def calendar(request: Request) -> Response:
    web = web_of(request)
    enabled = kernel.has_command(web.ctx, "upcoming_posts")
    raw = request.query_params.get("days", "")
    days = int(raw) if raw.isdigit() and int(raw) in DAYS else DAYS[-1]
    texts: list[str] = []
    items: list[dict[str, Any]] = []
    if enabled:
        who = _who(request)
        for _key, text, variables in await kernel.run_command_data(
            web.ctx, who, "upcoming_posts", str(days)
        ):
            texts += [text.strip()] if text.strip() else []
            found = variables.get("items")
            items += [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []
    return web.render(
        request,
        "calendar.html",
        enabled=enabled,
        days=days,
        choices=DAYS,
        texts=texts,
        weeks=month_grid(web.ctx.now.date(), days, items),
        posts=kernel.calendar_posts(web.ctx) if enabled else [],
    )


@page("viewer")
async def calendar_post(request: Request) -> Response:
    web = web_of(request)
    post_id = request.query_params.get("id", "")[:100]
    post = next((p for p in kernel.calendar_posts(web.ctx) if p["id"] == post_id), None)
    if post is None or not kernel.has_command(web.ctx, "upcoming_posts"):
        return web.render(request, "error.html", 404, code="post")
    answers = await kernel.run_command(web.ctx, _who(request), "upcoming_posts", post_id)
    pictures = kernel.post_images(web.ctx, post_id)
    return web.render(
        request,
        "calendar_post.html",
        post=post,
        texts=_texts(answers),
        pictures=[p.name for p in pictures],
    )


# -- 报表 -----------------------------------------------------------------------------------------


def reports_dir(request: Request) -> Path:
    return Path(web_of(request).ctx.settings.bot.data_dir) / "reports"


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        return ""


@page("viewer")
async def reports(request: Request) -> Response:
    web = web_of(request)
    return web.render(
        request,
        "reports.html",
        enabled=kernel.has_command(web.ctx, "analytics_report"),
        choices=REPORT_DAYS,
        texts=[],
        folder="",
        form={},
    )


@page("operator", post=True)
async def reports_make(request: Request) -> Response:
    """Generating takes a while and runs a process: operators only."""
    web = web_of(request)
    form = request.state.form
    if not kernel.has_command(web.ctx, "analytics_report"):
        return web.render(request, "error.html", 404, code="page")
    raw_days = str(form.get("days", ""))
    since, until = _day(str(form.get("since", ""))), _day(str(form.get("until", "")))
    kept = {"since": str(form.get("since", ""))[:10], "until": str(form.get("until", ""))[:10]}
    if since or until:
        if not (since and until) or since > until:
            return web.render(
                request,
                "reports.html",
                400,
                enabled=True,
                choices=REPORT_DAYS,
                texts=[],
                folder="",
                form=kept,
                problem="dates",
            )
        args = [since, until]
    else:
        args = [raw_days if raw_days.isdigit() and int(raw_days) in REPORT_DAYS else "30"]
    before = {p: p.stat().st_mtime for p in reports_dir(request).glob("*/report.html")}
    answers = await kernel.run_command(web.ctx, _who(request), "analytics_report", *args)
    web.ctx.record("audit", user=request.state.session.user.id, action="analytics_report")
    folder = _newest(request, before)
    texts = [_without_path(t, request) for t in _texts(answers)]
    return web.render(
        request,
        "reports.html",
        enabled=True,
        choices=REPORT_DAYS,
        texts=texts,
        folder=folder,
        form=kept,
    )


def _without_path(text: str, request: Request) -> str:
    """The answer names the file on the server; the page links to it instead."""
    return "\n".join(
        line for line in text.splitlines() if str(reports_dir(request)) not in line
    ).strip()


def _newest(request: Request, before: dict[Path, float]) -> str:
    """The report folder the command just wrote (new, or rewritten for the same dates)."""
    written = [
        p for p in reports_dir(request).glob("*/report.html") if before.get(p) != p.stat().st_mtime
    ]
    if not written:
        return ""
    newest = max(written, key=lambda p: p.stat().st_mtime)
    return newest.parent.name


@page("viewer")
async def report_file(request: Request) -> Response:
    name = request.query_params.get("r", "")
    root = reports_dir(request)
    if not _FOLDER.match(name) or name.startswith("."):
        return Response(status_code=404)
    folder = root / name
    path = folder / "report.html"
    if folder.is_symlink() or path.is_symlink() or not path.is_file():
        return Response(status_code=404)
    if not path.resolve().is_relative_to(root.resolve()):
        return Response(status_code=404)
    response = FileResponse(path, media_type="text/html; charset=utf-8")
    response.headers["content-security-policy"] = REPORT_CSP
    return response


def routes() -> list[BaseRoute]:
    return [
        Route("/calendar", calendar),
        Route("/calendar/post", calendar_post),
        Route("/reports", reports),
        Route("/reports/make", reports_make, methods=["POST"]),
        Route("/reports/file", report_file),
    ]
