"""The pages: setup, login/logout, 账号, 待处理, 设置, 账号管理 (users). Each action calls the
kernel adapter (plugins/_web/kernel.py), which calls the same code as the chat commands.

Messages shown after an action are codes (?m=...) the templates turn into Chinese."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from plugins._web import broadcasts, content, kernel, persona_edit, reviews
from plugins._web.app import COOKIE, PRE_COOKIE, page, read_form, route_name, web_of
from plugins._web.auth import (
    RANK,
    ROLES,
    check_password,
    digest,
    hash_password,
    valid_name,
    valid_password,
)

MAX_REPLY = 1000
NEEDS_LOGIN = ("logout", "disconnected")


def back(path: str, message: str = "") -> RedirectResponse:
    return RedirectResponse(f"{path}?m={message}" if message else path, status_code=303)


def _audit(request: Request, action: str, **data: Any) -> None:
    web = web_of(request)
    session = getattr(request.state, "session", None)
    who = session.user.id if session else ""
    web.ctx.record("audit", user=who, action=action, **data)


def _who(request: Request) -> Any:
    user = request.state.session.user
    return kernel.operator(user.id, user.name)


# -- setup and login -------------------------------------------------------------------------


def _pre_form(request: Request, template: str, status: int = 200, **data: Any) -> Response:
    """A page with a pre-login form: a fresh double-submit token in the cookie and form."""
    web = web_of(request)
    token = web.auth.new_pre()
    response = web.render(request, template, status, pre=token, **data)
    web.cookie(response, PRE_COOKIE, token, 3600)
    return response


def _pre_ok(request: Request, form: Any) -> bool:
    if form is None:
        return False
    return web_of(request).auth.check_pre(
        request.cookies.get(PRE_COOKIE, ""), str(form.get("csrf", ""))
    )


def _signed_in(request: Request, user: Any, to: str = "/account") -> Response:
    web = web_of(request)
    cookie = web.auth.open_session(user, replacing=request.cookies.get(COOKIE, ""))
    response = RedirectResponse(to, status_code=303)
    web.cookie(response, COOKIE, cookie, int(web.auth.session_s))
    response.delete_cookie(PRE_COOKIE, path="/")
    return response


async def setup(request: Request) -> Response:
    web = web_of(request)
    token = str(request.path_params["token"])
    state = web.auth.check_setup(token)
    if state != "ok":
        return web.render(request, "setup_gone.html", 404 if state == "wrong" else 410, why=state)
    if request.method == "GET":
        return _pre_form(request, "setup.html", token=token)
    form = await read_form(request)
    if not _pre_ok(request, form):
        return web.render(request, "error.html", 403, code="csrf")
    assert form is not None
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    problem = ""
    if not valid_name(name):
        problem = "name"
    elif not valid_password(password):
        problem = "password"
    elif password != str(form.get("confirm", "")):
        problem = "confirm"
    if problem:
        return _pre_form(request, "setup.html", 400, token=token, problem=problem, name=name)
    user = web.auth.add_user(name, "owner", await hash_password(password))
    web.auth.finish_setup()  # single use: the link is dead from here on
    web.ctx.record("audit", user=user.id, action="setup")
    return _signed_in(request, user)


def _rate_limited(request: Request) -> bool:
    web = web_of(request)
    address = request.client.host if request.client else ""
    now = time.monotonic()
    recent = [t for t in web.attempts.get(address, []) if now - t < 60]
    if len(web.attempts) > 10_000:
        web.attempts.clear()  # a flood of addresses must not grow memory without bound
    recent.append(now)
    web.attempts[address] = recent
    return len(recent) > int(web.ctx.config.login_rate_per_min)


async def login(request: Request) -> Response:
    web = web_of(request)
    if request.method == "GET":  # also when signed in: logging in again starts a new session
        return _pre_form(request, "login.html", message=request.query_params.get("m", ""))
    if _rate_limited(request):
        return _pre_form(request, "login.html", 429, problem="rate")
    form = await read_form(request)
    if not _pre_ok(request, form):
        return web.render(request, "error.html", 403, code="csrf")
    assert form is not None
    name = str(form.get("name", "")).strip()[:64]
    password = str(form.get("password", ""))[:256]
    guard = kernel.login_guard(web.ctx)
    key = digest(name.lower())[:16]  # typed names, even wrong ones, are not stored
    now = web.ctx.now.timestamp()
    lock = guard.locked(key, now)
    if lock is not None:
        web.ctx.record("audit", user="", action="login_locked")
        minutes = max(1, int((lock.until - now + 59) // 60))
        return _pre_form(request, "login.html", 429, problem="locked", minutes=minutes)
    user, stored = web.auth.by_name(name)
    if user is None or not await check_password(stored, password):
        _, started = guard.failed(key, now)
        web.ctx.record("audit", user=user.id if user else "", action="login_failed")
        if started is not None:
            minutes = max(1, int((started.until - now + 59) // 60))
            return _pre_form(request, "login.html", 429, problem="locked", minutes=minutes)
        return _pre_form(request, "login.html", 401, problem="wrong", name=name)
    kernel.login_succeeded(web.ctx, key)
    web.ctx.record("audit", user=user.id, action="login")
    return _signed_in(request, user)


@page("viewer", post=True)
async def logout(request: Request) -> Response:
    web = web_of(request)
    web.auth.close_session(request.cookies.get(COOKIE, ""))
    _audit(request, "logout")
    response = RedirectResponse("/login?m=out", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- 账号 -----------------------------------------------------------------------------------------


def _account_state(found: dict[str, Any]) -> str:
    if found["status"] == "scan" and found["qr_version"]:
        return "scan"
    if found["connected"]:
        return "online"
    if found["login"].get("state") in NEEDS_LOGIN or found["status"] == "scan":
        return "needs_login"
    return "offline"


async def _account_data(request: Request) -> dict[str, Any]:
    found = await kernel.account(web_of(request).ctx)
    return {"account": found, "state": _account_state(found)}


@page("viewer")
async def account(request: Request) -> Response:
    return web_of(request).render(request, "account.html", **await _account_data(request))


@page("viewer")
async def account_live(request: Request) -> Response:
    return web_of(request).render(request, "_account_live.html", **await _account_data(request))


@page("viewer")
async def account_qr(request: Request) -> Response:
    png = kernel.login_qr(web_of(request).ctx)
    if png is None:
        return Response(status_code=404)
    return FileResponse(png, media_type="image/png")


# -- 待处理 ---------------------------------------------------------------------------------------


@page("viewer")
async def inbox(request: Request) -> Response:
    web = web_of(request)
    return web.render(
        request,
        "inbox.html",
        tickets=await kernel.tickets(web.ctx),
        message=request.query_params.get("m", ""),
        can_handoffs=kernel.has_command(web.ctx, "handback"),
        **await reviews.sections(request),
    )


async def _ticket(request: Request, chat_id: str) -> dict[str, Any] | None:
    found = await kernel.tickets(web_of(request).ctx)
    return next((t for t in found if t["chat_id"] == chat_id), None)


@page("staff", post=True)
async def inbox_reply(request: Request) -> Response:
    web = web_of(request)
    form = request.state.form
    chat_id = str(form.get("chat", ""))
    text = str(form.get("text", "")).strip()
    if await _ticket(request, chat_id) is None:
        return back("/inbox", "gone")
    if not text or len(text) > MAX_REPLY:
        return back("/inbox", "empty" if not text else "long")
    await kernel.staff_reply(web.ctx, _who(request), chat_id, text)
    _audit(request, "reply", chat_id=chat_id, length=len(text))
    return back("/inbox", "sent")


@page("staff", post=True)
async def inbox_end(request: Request) -> Response:
    web = web_of(request)
    chat_id = str(request.state.form.get("chat", ""))
    ticket = await _ticket(request, chat_id)
    if ticket is None:
        return back("/inbox", "gone")
    await kernel.run_command(web.ctx, _who(request), "handback", str(ticket["no"]))
    _audit(request, "handback", chat_id=chat_id)
    return back("/inbox", "ended")


# -- 设置 -----------------------------------------------------------------------------------------


@page("viewer")
async def settings(request: Request) -> Response:
    web = web_of(request)
    return web.render(
        request,
        "settings.html",
        rows=kernel.effective_settings(web.ctx),
        account=await kernel.account(web.ctx),
    )


# -- users (owner only) -----------------------------------------------------------------------


@page("owner")
async def users(request: Request) -> Response:
    web = web_of(request)
    return web.render(
        request,
        "users.html",
        users=web.auth.users(),
        roles=ROLES,
        message=request.query_params.get("m", ""),
    )


@page("owner", post=True)
async def users_add(request: Request) -> Response:
    web = web_of(request)
    form = request.state.form
    name = str(form.get("name", "")).strip()
    role = str(form.get("role", ""))
    password = str(form.get("password", ""))
    if not valid_name(name) or role not in RANK:
        return back("/users", "name")
    if not valid_password(password):
        return back("/users", "password")
    if web.auth.by_name(name)[0] is not None:
        return back("/users", "taken")
    user = web.auth.add_user(name, role, await hash_password(password))
    _audit(request, "user_added", target=user.id, role=role)
    return back("/users", "added")


# -- 客户 -----------------------------------------------------------------------------------------
# Contact ids travel in the query string and forms, never in the path: the access log
# keeps paths only.


@page("viewer")
async def customers(request: Request) -> Response:
    web = web_of(request)
    query = request.query_params.get("q", "").strip()[:64]
    found, total = kernel.find_customers(web.ctx, query) if query else ([], 0)
    return web.render(request, "customers.html", q=query, found=found, total=total)


def _customer_page(request: Request, contact_id: str, result: list[tuple[str, str]]) -> Response:
    web = web_of(request)
    found = kernel.customer(web.ctx, contact_id)
    return web.render(
        request,
        "customer.html",
        404 if found is None and not result else 200,
        customer=found,
        contact_id=contact_id,
        result=[text for _, text in result],
        can_tag=kernel.has_command(web.ctx, "tag"),
        can_delete=kernel.has_command(web.ctx, "delete_contact"),
    )


@page("viewer")
async def customer_view(request: Request) -> Response:
    return _customer_page(request, request.query_params.get("id", "")[:128], [])


async def _customer_command(request: Request, name: str, *args: str) -> Response:
    web = web_of(request)
    contact_id = str(request.state.form.get("id", ""))[:128]
    if not kernel.has_command(web.ctx, name) or kernel.customer(web.ctx, contact_id) is None:
        return _customer_page(request, contact_id, [])
    result = await kernel.run_command(web.ctx, _who(request), name, contact_id, *args)
    _audit(request, name, contact_id=contact_id)
    return _customer_page(request, contact_id, result)


@page("staff", post=True)
async def customer_tag(request: Request) -> Response:
    form = request.state.form
    # Operators type lists with Chinese input methods too: the full-width comma separates.
    tags = str(form.get("tags", "")).replace("\uff0c", " ").replace(",", " ").split()
    if not tags:
        return _customer_page(request, str(form.get("id", ""))[:128], [])
    name = "untag" if str(form.get("op", "")) == "untag" else "tag"
    return await _customer_command(request, name, *tags[:10])


@page("operator", post=True)
async def customer_delete(request: Request) -> Response:
    """Erasure, as the chat command does it: the id typed a second time confirms it."""
    confirm = str(request.state.form.get("confirm", "")).strip()[:128]
    # Without the second id the command only explains what erasure removes.
    return await _customer_command(request, "delete_contact", *([confirm] if confirm else []))


# -- 人设 -----------------------------------------------------------------------------------------
# Template keys travel in the query string and forms (see 客户).

_trial_lock = asyncio.Lock()  # one trial at a time: each is a whole load of the folder


@page("viewer")
async def persona(request: Request) -> Response:
    web = web_of(request)
    query = request.query_params.get("q", "").strip()[:64]
    keys = await asyncio.to_thread(persona_edit.listing, kernel.persona_root(web.ctx), query)
    return web.render(request, "persona.html", q=query, groups=keys)


def _editor(request: Request, key: str, source: str, status: int = 200, **data: Any) -> Response:
    return web_of(request).render(
        request, "persona_edit.html", status, key=key, source=source, **data
    )


@page("viewer")
async def persona_view(request: Request) -> Response:
    web = web_of(request)
    key = request.query_params.get("key", "")[:200]
    path = persona_edit.locate(kernel.persona_root(web.ctx), key)
    if path is None:
        return web.render(request, "error.html", 404, code="template")
    return _editor(request, key, persona_edit.read(path))


@dataclass
class _Edit:
    key: str
    source: str
    path: Path | None = None
    trial: persona_edit.Trial | None = None
    refused: Response | None = None  # the answer when the edit goes no further


async def _tried(request: Request) -> _Edit:
    """The form's key and text, its file and the trial of the text."""
    web = web_of(request)
    form = request.state.form
    edit = _Edit(str(form.get("key", ""))[:200], str(form.get("source", "")).replace("\r\n", "\n"))
    edit.path = persona_edit.locate(kernel.persona_root(web.ctx), edit.key)
    if edit.path is None:
        _audit(request, "persona_refused")
        edit.refused = web.render(request, "error.html", 404, code="template")
    elif len(edit.source) > persona_edit.MAX_SOURCE:
        edit.refused = _editor(request, edit.key, edit.source, 413, too_long=True)
    else:
        max_chars, cache = kernel.persona_limits(web.ctx)
        root = kernel.persona_root(web.ctx)
        async with _trial_lock:
            edit.trial = await asyncio.to_thread(
                persona_edit.trial, root, edit.key, edit.source, max_chars, cache
            )
        if not edit.trial.ok:
            edit.refused = _editor(request, edit.key, edit.source, 422, trial=edit.trial)
    return edit


@page("operator", post=True)
async def persona_try(request: Request) -> Response:
    edit = await _tried(request)
    return edit.refused or _editor(request, edit.key, edit.source, trial=edit.trial)


@page("operator", post=True)
async def persona_save(request: Request) -> Response:
    """Saved only after the trial passed; then the bot's hot reload picks it up."""
    edit = await _tried(request)
    if edit.refused is not None or edit.path is None:
        return edit.refused or Response(status_code=404)
    await asyncio.to_thread(persona_edit.save, edit.path, edit.source)
    problems = await kernel.reload_persona(web_of(request).ctx)
    _audit(request, "persona_saved", key=edit.key)
    return _editor(
        request, edit.key, edit.source, trial=edit.trial, saved=True, reload_problems=problems
    )


async def home(request: Request) -> Response:
    return RedirectResponse("/account", status_code=303)


def routes() -> list[BaseRoute]:
    return [
        Route("/", home),
        Route("/setup/{token}", setup, methods=["GET", "POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/account", account),
        Route("/account/live", account_live),
        Route("/account/qr.png", account_qr),
        Route("/inbox", inbox),
        Route("/inbox/reply", inbox_reply, methods=["POST"]),
        Route("/inbox/end", inbox_end, methods=["POST"]),
        Route("/customers", customers),
        Route("/customers/view", customer_view),
        Route("/customers/tag", customer_tag, methods=["POST"]),
        Route("/customers/delete", customer_delete, methods=["POST"]),
        Route("/persona", persona),
        Route("/persona/edit", persona_view),
        Route("/persona/try", persona_try, methods=["POST"]),
        Route("/persona/save", persona_save, methods=["POST"]),
        Route("/settings", settings),
        Route("/users", users),
        Route("/users/add", users_add, methods=["POST"]),
        *broadcasts.routes(),
        *reviews.routes(),
        *content.routes(),
    ]


__all__ = ["route_name", "routes"]
