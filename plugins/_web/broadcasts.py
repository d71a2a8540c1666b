"""群发 pages: campaigns of the broadcasts plugin, run through its commands (create, dry run,
start with the typed count, status, pause, resume, cancel, report) exactly as chat and the
CLI run them. Campaign names travel in the query string and forms, never in the path.

A new campaign made on the page is a campaign file like the ones operators write by hand
(persona/broadcasts/campaigns/<name>.toml): the page writes it, then the create command
reads and checks it; a file the command refused is removed again."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from plugins._web import kernel
from plugins._web.app import page, web_of

_ID = re.compile(kernel.CAMPAIGN_ID)
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
# What the broadcasts plugin's answers tell a terminal user to type: the page has buttons.
_TERMINAL_HINT = "scripts/broadcast.py"
_ACTIONS = {
    "create": "broadcast_create",
    "dry_run": "broadcast_dry_run",
    "start": "broadcast_start",
    "pause": "broadcast_pause",
    "resume": "broadcast_resume",
    "cancel": "broadcast_cancel",
}
MAX_SEGMENT = 300
MAX_TITLE = 60
MAX_VARS = 20


def _texts(answers: list[tuple[str, str]]) -> list[str]:
    shown = []
    for _key, text in answers:
        lines = [line for line in text.splitlines() if _TERMINAL_HINT not in line]
        shown.append("\n".join(lines).strip())
    return [t for t in shown if t]


def _who(request: Request) -> Any:
    user = request.state.session.user
    return kernel.operator(user.id, user.name)


def _audit(request: Request, action: str, **data: Any) -> None:
    session = request.state.session
    web_of(request).ctx.record("audit", user=session.user.id, action=action, **data)


def _name(value: str) -> str:
    """A campaign name, or "" (never a path: the command would read any file from the CLI)."""
    value = value.strip()[:48]
    return value if _ID.match(value) else ""


async def _index(request: Request, status: int = 200, **data: Any) -> Response:
    web = web_of(request)
    enabled = kernel.has_command(web.ctx, "broadcast_status")
    shown = await _status(request, "") if enabled else ([], [])
    return web.render(
        request,
        "broadcasts.html",
        status,
        enabled=enabled,
        campaigns=await kernel.campaigns(web.ctx) if enabled else [],
        texts=shown[0],
        bars=shown[1],
        id="",
        copies=kernel.copy_keys(web.ctx) if enabled else [],
        form=data.pop("form", {}),
        **data,
    )


@page("viewer")
async def index(request: Request) -> Response:
    return await _index(request)


@page("viewer")
async def live(request: Request) -> Response:
    """The status command's answer (all campaigns, or one), polled by the pages."""
    web = web_of(request)
    name = _name(request.query_params.get("id", ""))
    if not kernel.has_command(web.ctx, "broadcast_status"):
        return Response(status_code=404)
    texts, bars = await _status(request, name)
    return web.render(request, "_broadcast_live.html", texts=texts, bars=bars, id=name)


async def _status(request: Request, name: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The status command's answer, and a progress bar per campaign from its variables."""
    web = web_of(request)
    args = [name] if name else []
    answers = await kernel.run_command_data(web.ctx, _who(request), "broadcast_status", *args)
    bars = []
    for _key, _text, variables in answers:
        for c in variables.get("campaigns") or []:
            if isinstance(c, dict) and c.get("total"):
                pct = max(0, min(100, int(c.get("pct") or 0)))
                bars.append({"id": str(c.get("id", "")), "pct": pct})
    return _texts([(key, text) for key, text, _ in answers]), bars


async def _campaign_page(
    request: Request, name: str, result: list[str], code: int = 200, problem: str = ""
) -> Response:
    shown = await _status(request, name)
    return web_of(request).render(
        request,
        "broadcast.html",
        code,
        id=name,
        result=result,
        problem=problem,
        texts=shown[0],
        bars=shown[1],
    )


@page("viewer")
async def view(request: Request) -> Response:
    web = web_of(request)
    name = _name(request.query_params.get("id", ""))
    if not name or not kernel.has_command(web.ctx, "broadcast_status"):
        return web.render(request, "error.html", 404, code="campaign")
    return await _campaign_page(request, name, [])


@page("viewer")
async def report(request: Request) -> Response:
    web = web_of(request)
    name = _name(request.query_params.get("id", ""))
    if not name or not kernel.has_command(web.ctx, "broadcast_report"):
        return web.render(request, "error.html", 404, code="campaign")
    answers = await kernel.run_command(web.ctx, _who(request), "broadcast_report", name)
    return web.render(request, "broadcast_report.html", id=name, texts=_texts(answers))


@page("operator", post=True)
async def act(request: Request) -> Response:
    """One of the campaign's commands; starting needs the recipient count typed."""
    web = web_of(request)
    form = request.state.form
    name = _name(str(form.get("id", "")))
    command = _ACTIONS.get(str(form.get("op", "")))
    if not name or command is None or not kernel.has_command(web.ctx, command):
        return web.render(request, "error.html", 404, code="campaign")
    args = [name]
    if command == "broadcast_start":
        # Without a count the command answers with the dry run and the number to type.
        count = str(form.get("count", "")).strip()
        if count and (not count.isdigit() or len(count) > 9):
            return await _campaign_page(request, name, [], 400, problem="count")
        args += [count] if count else []
    answers = await kernel.run_command(web.ctx, _who(request), command, *args)
    _audit(request, command, campaign=name)
    return await _campaign_page(request, name, _texts(answers))


def campaign_file(
    title: str, copy: str, segment: str, variables: dict[str, str | int], start: str = "now"
) -> str:
    """The TOML of a campaign file (JSON strings are TOML basic strings)."""

    def q(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    lines = [
        f"title = {q(title)}",
        f"copy = {q(copy)}",
        f"segment = {q(segment)}",
        f"start = {q(start)}",
    ]
    if variables:
        lines.append("\n[vars]")
        for key, value in variables.items():
            lines.append(f"{key} = {value if isinstance(value, int) else q(value)}")
    return "\n".join(lines) + "\n"


def parse_vars(text: str) -> dict[str, str | int] | None:
    """`名 = 值` lines (the copy's variables); None when a line is not one."""
    found: dict[str, str | int] = {}
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _VAR.match(key) or len(found) >= MAX_VARS or len(value) > 200:
            return None
        found[key] = int(value) if value.isdigit() and len(value) < 10 else value
    return found


def _write_new(path: Path, text: str) -> bool:
    """Create the file; False when it exists (a campaign file is never overwritten here)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    return True


@page("operator", post=True)
async def new(request: Request) -> Response:
    web = web_of(request)
    form = request.state.form
    name = _name(str(form.get("id", "")))
    title = str(form.get("title", "")).strip()[:MAX_TITLE]
    copy = str(form.get("copy", ""))
    segment = " ".join(str(form.get("segment", "")).split())[:MAX_SEGMENT]
    variables = parse_vars(str(form.get("vars", ""))[:4000])
    kept = {k: str(form.get(k, "")) for k in ("id", "title", "copy", "segment", "vars")}
    folder = kernel.campaigns_dir(web.ctx)
    problem = ""
    if folder is None or not kernel.has_command(web.ctx, "broadcast_create"):
        return web.render(request, "error.html", 404, code="campaign")
    if not name:
        problem = "name"
    elif copy not in kernel.copy_keys(web.ctx):
        problem = "copy"
    elif not segment:
        problem = "segment"
    elif variables is None:
        problem = "vars"
    if problem:
        return await _index(request, 400, problem=problem, form=kept)
    assert variables is not None
    text = campaign_file(title or name, copy, segment, variables)
    path = folder / f"{name}.toml"
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    if not await asyncio.to_thread(_write_new, path, text):
        return await _index(request, 409, problem="taken", form=kept)
    answers = await kernel.run_command(web.ctx, _who(request), "broadcast_create", name)
    _audit(request, "broadcast_new", campaign=name)
    if not any(key == "broadcasts/created" for key, _ in answers):
        path.unlink(missing_ok=True)  # refused: the form keeps what was typed to fix it
        return await _index(request, 422, refused=_texts(answers), form=kept)
    return await _campaign_page(request, name, _texts(answers))


def routes() -> list[BaseRoute]:
    return [
        Route("/broadcasts", index),
        Route("/broadcasts/live", live),
        Route("/broadcasts/view", view),
        Route("/broadcasts/report", report),
        Route("/broadcasts/new", new, methods=["POST"]),
        Route("/broadcasts/do", act, methods=["POST"]),
    ]
