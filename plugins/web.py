"""Web admin (运营后台): server-rendered pages for operators and staff, served by the bot
process itself on WEB_HOST:WEB_PORT (127.0.0.1 by default; put HTTPS in front with a
reverse proxy). Off unless `web` is listed in BOT_PLUGINS.

At the first start without any user, a one-time setup link for the owner account is
printed in the terminal (never logged). Pages, sessions, roles and the security rules live
in plugins/_web/; every page action calls the same logic as the chat commands and the CLI
(plugins/_web/kernel.py is the one adapter to the kernel).

Other front ends served by the same process (the 企业微信 callback) mount their own ASGI
app with plugins._web.server.mount(path, app) before or after start-up.

Persona: web/staff_reply (a reply typed on the 待处理 page), web/setup_link, web/started,
web/port_busy (terminal lines).   Config: WEB_* (see WebConfig and config.example.env).
"""

from __future__ import annotations

import sys

from plugins._web import kernel, server
from plugins._web.config import WebConfig
from pond import Context, Plugin

plugin = Plugin(
    "web",
    persona=["web/staff_reply", "web/setup_link", "web/started", "web/port_busy"],
    config=WebConfig,
    description="web admin: login QR, hand-offs, settings, behind sessions, CSRF and roles",
)


@plugin.on_startup()
async def start(ctx: Context) -> None:
    if kernel.checking(ctx):
        return  # bot.py --check: the settings were parsed (WEB_*); nothing to serve
    running = await server.start(ctx)
    print(running.started_line, file=sys.stderr, flush=True)
    if running.setup_line:
        print(running.setup_line, file=sys.stderr, flush=True)


@plugin.on_shutdown()
async def stop(ctx: Context) -> None:
    await server.stop()
