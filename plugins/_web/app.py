"""The Starlette application: security headers, the access log, sessions, CSRF and roles.

Every page handler is wrapped by `page(role)`: no session -> a GET is redirected to the login
page and anything else gets 401; a role below `role` -> 403; a POST whose form lacks the
session's CSRF token -> 403. Apps mounted by other front ends (the 企业微信 callback) bring
their own authentication and get only the headers and the access log."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plugins._web.auth import Auth, Session
from pond import Context

HERE = Path(__file__).resolve().parent
COOKIE = "pond_session"
PRE_COOKIE = "pond_pre"
MAX_FORM_BYTES = 64 * 1024
access_log = logging.getLogger("pond.web.access")
log = logging.getLogger("pond.web")

CSP = (
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@dataclass
class Web:
    """What handlers share (on request.app.state.web)."""

    ctx: Context
    auth: Auth
    secure: bool  # served over https (the public URL says so): cookies are Secure
    templates: Environment = field(
        default_factory=lambda: Environment(
            loader=FileSystemLoader(HERE / "pages"), autoescape=True, trim_blocks=True
        )
    )
    attempts: dict[str, list[float]] = field(default_factory=dict)  # login posts per address

    def render(
        self, request: Request, template: str, status: int = 200, **data: Any
    ) -> HTMLResponse:
        session: Session | None = getattr(request.state, "session", None)
        html = self.templates.get_template(template).render(
            user=session.user if session else None,
            csrf=session.csrf if session else "",
            path=request.url.path,
            **data,
        )
        return HTMLResponse(html, status_code=status)

    def cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


Handler = Callable[[Request], Awaitable[Response]]


def page(role: str, *, post: bool = False) -> Callable[[Handler], Handler]:
    """Session, role and (for a POST) CSRF checks around a handler; the parsed form is on
    request.state.form."""

    def wrap(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            web = web_of(request)
            session = web.auth.session(request.cookies.get(COOKIE, ""))
            if session is None:
                if request.method == "GET":
                    return RedirectResponse("/login", status_code=303)
                return PlainTextResponse("401", status_code=401)
            request.state.session = session
            if not session.user.can(role):
                web.ctx.record("denied", user=session.user.id, route=route_name(request))
                return web.render(request, "error.html", 403, code="forbidden")
            if post:
                form = await read_form(request)
                if form is None or not same(str(form.get("csrf", "")), session.csrf):
                    web.ctx.record("denied", user=session.user.id, route=route_name(request))
                    return web.render(request, "error.html", 403, code="csrf")
                request.state.form = form
            return await handler(request)

        checked.__name__ = handler.__name__
        return checked

    return wrap


def same(a: str, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())


async def read_form(request: Request) -> FormData | None:
    """The url-encoded form of a POST, or None (too big, or not a form)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        return None
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > MAX_FORM_BYTES:
        return None  # browsers send the length of a form; a stream without one is refused
    return await request.form(max_files=0, max_fields=50)


def route_name(request: Request) -> str:
    """The path with its parameters as names: ids and tokens stay out of logs and audits."""
    path = request.url.path
    for name, value in (request.scope.get("path_params") or {}).items():
        path = path.replace(str(value), "{" + name + "}")
    return path


class Guarded:
    """Security headers on every response; one access-log line per request with the
    method, the route (parameters as names, no query string), status and time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0
        began = False

        async def send_guarded(message: Message) -> None:
            nonlocal status, began
            if message["type"] == "http.response.start":
                began = True
                status = int(message["status"])
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_guarded)
        except Exception as error:
            # One line for the operator, never a traceback on the page or at INFO; the
            # bot keeps serving.
            log.error(
                "web page failed: %s: %s",
                type(error).__name__,
                error,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            if not began:
                await PlainTextResponse("500", status_code=500)(scope, receive, send_guarded)
        finally:
            path = str(scope.get("path", ""))
            for name, value in (scope.get("path_params") or {}).items():
                path = path.replace(str(value), "{" + name + "}")
            access_log.info(
                "%s %s %s %.0fms",
                scope.get("method", ""),
                path,
                status,
                (time.monotonic() - started) * 1000,
            )


def build(ctx: Context, auth: Auth, public_url: str, extra: list[BaseRoute]) -> Starlette:
    from plugins._web import pages

    app = Starlette(
        routes=[
            *pages.routes(),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            *extra,
        ]
    )
    app.state.web = Web(ctx, auth, urlsplit(public_url).scheme == "https")
    app.add_middleware(Guarded)
    return app
