"""The uvicorn server inside the bot process: same event loop as the App (storage is touched
from the loop only), started by the web plugin's start-up hook, stopped by its shutdown.

Other front ends of the same process add their own ASGI apps or routes with `mount()`:
before start-up they are part of the app, after it they are added to the live router."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp

from plugins._web import kernel
from plugins._web.app import build
from plugins._web.auth import Auth
from pond import Context, StartupError

log = logging.getLogger("pond.web")
_extra: list[BaseRoute] = []


def mount(path: str, app: ASGIApp, name: str | None = None) -> None:
    """Serve `app` under `path` (e.g. "/wecom") next to the admin pages. It brings its own
    authentication: sessions, CSRF and roles apply to the admin pages only."""
    route = Mount(path, app=app, name=name)
    add_route(route)


def add_route(route: BaseRoute) -> None:
    _extra.append(route)
    if _running is not None:
        # Before the static mount and the pages' catch-alls would not matter: paths differ.
        _running.app.router.routes.append(route)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The bot owns SIGINT/SIGTERM (App.request_stop); uvicorn must not take them over.
        yield


@dataclass
class Running:
    app: Starlette
    server: _Server
    task: asyncio.Task[None]
    url: str  # what people type (WEB_PUBLIC_URL, else the local address)
    local: str  # the address bound here
    started_line: str
    setup_line: str


_running: Running | None = None


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def start(ctx: Context) -> Running:
    global _running
    cfg = ctx.config
    try:
        sock = _listen(cfg.host, cfg.port)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        line = ctx.render(
            "web/port_busy", chat_id="web", host=cfg.host, port=cfg.port, reason=reason
        ).text
        raise StartupError(line) from None
    port = int(sock.getsockname()[1])
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    local = f"http://{host}:{port}"
    url = (cfg.public_url or local).rstrip("/")
    auth = Auth(ctx.store, lambda: ctx.now.timestamp(), cfg.session_hours * 3600)
    kernel.watch_transport(ctx)
    app = build(ctx, auth, url, list(_extra))
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,  # our own access log keeps query strings and tokens out
        lifespan="off",
        server_header=False,
        proxy_headers=True,  # X-Forwarded-For from the reverse proxy on this machine
        forwarded_allow_ips="127.0.0.1",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    setup_line = ""
    if not auth.has_users():
        token = auth.issue_setup(cfg.setup_ttl_min * 60)
        setup_line = ctx.render(
            "web/setup_link",
            chat_id="web",
            url=f"{url}/setup/{token}",
            minutes=int(cfg.setup_ttl_min),
        ).text
    started = ctx.render("web/started", chat_id="web", url=url + "/").text
    _running = Running(app, server, task, url, local, started, setup_line)
    log.info("web admin listening on %s:%d", cfg.host, port)
    return _running


def running() -> Running | None:
    return _running


async def stop() -> None:
    global _running
    found, _running = _running, None
    if found is None:
        return
    found.server.should_exit = True
    try:
        async with asyncio.timeout(5):
            await found.task
    except TimeoutError:
        found.task.cancel()
