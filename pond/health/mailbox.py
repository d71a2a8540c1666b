"""How the command line hands a command to the running bot: a request row in the health
namespace, picked up by the bot's heartbeat loop, answered with what the command printed.
It carries every plugin's commands, the kernel's binding code and the plugins' status
parts (Plugin.status_source), so it belongs to the kernel beside the heartbeat."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pond.commands import Command
from pond.events import Contact
from pond.health.common import NAMESPACE
from pond.health.sources import collect_status
from pond.store import Store

if TYPE_CHECKING:
    from pond.app import App

REQ, RES = "cli:req:", "cli:res:"


async def answer_request(app: App, request: dict[str, Any]) -> dict[str, Any]:
    """Run one command-line request in this App; its printed output is the answer."""
    op = request.get("op", "command")
    if op == "code":
        before = app.admins.binding_code
        code = app.admins.code(new=bool(request.get("new")))
        user = str(request.get("user", "cli"))[:40]
        app.record("admin.code_shown", contact_id=f"cli:{user}", new=code.value != before)
        return {"code": code.value, "expires_at": code.expires_at.isoformat()}
    if op == "snapshot":
        return {"snapshot": await collect_status(app)}  # the plugins' status_source parts
    name = str(request.get("command", ""))
    if name not in app.commands.specs:
        return {"error": "unknown_command", "outputs": []}
    user = str(request.get("user", "cli"))[:40]
    command = Command(
        name=name,
        args=tuple(str(a) for a in request.get("args", [])),
        rest=str(request.get("rest", "")),
        sender=Contact(id=f"cli:{user}", name=user),
        timestamp=app.clock.now(),
        origin="cli",
    )
    return {"outputs": await run_captured(app, command)}


async def run_captured(app: App, command: Command) -> list[list[str]]:
    """Run a command with origin "cli", returning what it printed as [key, text] pairs."""
    outputs: list[list[str]] = []
    previous = app.cli_output
    app.cli_output = lambda key, text: outputs.append([key, text])
    try:
        await app.run_command(replace(command, origin="cli"))
    finally:
        app.cli_output = previous
    return outputs


async def ask(
    store: Store,
    request: dict[str, Any],
    *,
    timeout: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    poll: float = 0.2,
) -> dict[str, Any] | None:
    """Hand a request to the running bot and wait for its answer (None on timeout)."""
    kv = store.namespace(NAMESPACE)
    token = secrets.token_hex(6)
    kv.set(REQ + token, request)
    waited = 0.0
    while waited <= timeout:
        answer = kv.get(RES + token)
        if isinstance(answer, dict):
            kv.delete(RES + token)
            return answer
        await sleep(poll)
        waited += poll
    kv.delete(REQ + token)
    return None
