"""The web admin's one adapter to the kernel and to other plugins' logic.

PORT HERE when Context grows: everything below that uses `ctx.app`, a pond submodule or
another plugin's helpers is what Context does not offer yet (the account's login state, the
command layer with captured output, hand-off tickets, the health snapshot, effective
settings). Pages call only these functions, never the kernel directly, so that port is
this file alone. No logic of its own lives here: each function calls the code the chat
commands and the CLI call."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import itertools
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pond import ActionClass, Command, Contact, Context, HumanTakeover
from pond.binding import SENDER_KEY, Guard, Limits  # the binding code's guard against guessing
from pond.config import SECTIONS, env_key
from pond.health.status import snapshot


def checking(ctx: Context) -> bool:
    """`bot.py --check`: nothing is served (the running bot may hold the port)."""
    return bool(getattr(ctx.app, "checking", False))


# -- live login state (the transport's status reports) ---------------------------------------

_status: dict[str, Any] = {"status": "", "data": {}, "n": 0}


def watch_transport(ctx: Context) -> None:
    """Listen to the transport's status reports next to the App (which records them and
    alerts the admins): the 账号 page needs the newest QR code as soon as it is issued."""
    transport = ctx.app.transport
    _status.update(status="", data={}, n=0)  # what an earlier App in this process heard
    inner = transport.status_listener
    if getattr(inner, "_web_watch", False):
        return

    def listener(status: str, data: dict[str, Any]) -> None:
        _status.update(status=status, data=dict(data), n=int(_status["n"]) + 1)
        inner(status, data)

    listener._web_watch = True  # type: ignore[attr-defined]
    transport.status_listener = listener


def login_qr(ctx: Context) -> Path | None:
    """The PNG of the QR code waiting to be scanned, while the transport says one is."""
    if _status["status"] != "scan":
        return None
    png = str(_status["data"].get("qr_png") or "")
    path = Path(png) if png else None
    return path if path is not None and path.is_file() else None


async def account(ctx: Context) -> dict[str, Any]:
    """What the admin status command shows (pond.health.status.snapshot), plus the newest
    transport report and the QR code's version (the page reloads the image when it moves)."""
    found = await snapshot(ctx.app)
    found["status"] = str(_status["status"])
    found["qr_version"] = int(_status["n"]) if login_qr(ctx) else 0
    found["self_id"] = str(getattr(ctx.app.transport, "self_id", "") or "")
    return found


# -- the command layer -------------------------------------------------------------------------

_capture: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar(
    "web_capture", default=None
)
_ids = itertools.count(1)


def _install_capture(ctx: Context) -> None:
    app = ctx.app
    if getattr(app.cli_output, "_web_capture", False):
        return
    inner = app.cli_output

    def output(key: str, text: str) -> None:
        found = _capture.get()
        if found is None:
            inner(key, text)
        else:
            found.append((key, text))

    output._web_capture = True  # type: ignore[attr-defined]
    app.cli_output = output


@contextlib.contextmanager
def _captured() -> Iterator[list[tuple[str, str]]]:
    found: list[tuple[str, str]] = []
    token = _capture.set(found)
    try:
        yield found
    finally:
        _capture.reset(token)


def operator(user_id: str, name: str) -> Contact:
    """The web user as the sender of a command: audited as web:<id>, never a WeChat id."""
    return Contact(id=f"web:{user_id}", name=name)


async def run_command(ctx: Context, who: Contact, name: str, *args: str) -> list[tuple[str, str]]:
    """Run an operator command exactly as the CLI does (App.run_command: audit, errors),
    with its answer captured for the page instead of printed: [(persona key, text)]."""
    _install_capture(ctx)
    command = Command(
        name,
        tuple(args),
        " ".join(args),
        who,
        ctx.now,
        id=f"web-{next(_ids)}",
        origin="cli",  # Context.reply prints (here: captures) instead of messaging anyone
    )
    with _captured() as found:
        await ctx.app.run_command(command)
    return found


def has_command(ctx: Context, name: str) -> bool:
    return name in ctx.app.commands.specs


# -- hand-offs (auto_reply's tickets) -----------------------------------------------------------


def _auto_reply(ctx: Context) -> Context | None:
    plugin = ctx.app.plugins.get("auto_reply")
    return Context(ctx.app, plugin) if plugin is not None else None


def tickets(ctx: Context) -> list[dict[str, Any]]:
    """Open hand-off tickets as the staff templates show them (auto_reply's own listing)."""
    from plugins._auto_reply import staff

    other = _auto_reply(ctx)
    if other is None:
        return []
    rows = staff.listing(other, staff.tickets(other))
    chats = {str(t.get("no")): t["chat_id"] for t in staff.tickets(other)}
    paused = ctx.app.pauses.active()
    for row in rows:
        row["chat_id"] = chats.get(str(row["no"]), row["contact_id"])
        entry = paused.get(row["chat_id"])
        row["paused"] = entry[1] if entry else ""
    return rows


async def staff_reply(ctx: Context, who: Contact, chat_id: str, text: str) -> None:
    """A person answers the customer: the text goes out as a reply through the outbox and
    its governor (the web plugin's persona key), and the chat is then handled as when
    staff type on the phone: the transport's HumanTakeover event goes through App.dispatch,
    so the kernel pauses the chat (BOT_TAKEOVER_PAUSE_MIN) and auto_reply marks the ticket
    answered, by the very code that handles a takeover."""
    await ctx.send(chat_id, "web/staff_reply", cls=ActionClass.REPLY, contact_id=chat_id, text=text)
    takeover = HumanTakeover(chat_id, ctx.now, id=f"web-{who.id}-{secrets.token_hex(8)}")
    await ctx.app.dispatch(takeover)


# -- login lock-out ------------------------------------------------------------------------------


def login_guard(ctx: Context) -> Guard:
    """The binding code's guard (per name, and everyone together), on the web's own store."""
    cfg = ctx.config
    limits = Limits(
        ttl=timedelta(0),  # no code here: only the counting and the lock are used
        tries=cfg.login_tries,
        tries_total=cfg.login_tries * 50,  # a lock on everyone would lock the owner out too
        lock=timedelta(minutes=cfg.login_lock_min),
    )
    return Guard(ctx.store, limits)


# -- settings and health -------------------------------------------------------------------------

_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "DATABASE_URL")


def masked(key: str, value: str) -> str:
    if value and any(word in key.upper() for word in _SECRET_WORDS):
        return "******"
    return value


def effective_settings(ctx: Context) -> list[dict[str, str]]:
    """Every setting of the kernel's sections and of the enabled plugins, as the process
    uses it (defaults included), secrets masked."""
    rows: list[dict[str, str]] = []
    settings = ctx.settings
    sections: list[tuple[str, Any]] = [
        (prefix, getattr(settings, prefix.lower())) for prefix, _ in SECTIONS
    ]
    for name, config in ctx.app.plugin_configs.items():
        sections.append((name.upper(), config))
    for prefix, section in sections:
        for f in dataclasses.fields(section):
            key = env_key(prefix, f)
            rows.append(
                {
                    "section": prefix,
                    "key": key,
                    "value": masked(key, _show(getattr(section, f.name))),
                    "set": "1" if key in settings.raw else "",
                }
            )
    return rows


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(value).items())
    return str(value)


def login_succeeded(ctx: Context, key: str) -> None:
    """The right password: that name's wrong attempts are forgotten."""
    ctx.store.delete(SENDER_KEY + key)


# -- customers -----------------------------------------------------------------------------------


def find_customers(ctx: Context, text: str, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
    """The admin find command's search (id, name or remark contains `text`)."""
    from plugins._admin.contacts import find

    return find(ctx.app, text, limit)


def customer(ctx: Context, contact_id: str) -> dict[str, Any] | None:
    found = ctx.app.book.get(contact_id)
    if found is None:
        return None
    tz = ctx.clock.tz
    view = found.as_dict()
    view["tags"] = sorted(found.tags)
    for name in ("first_seen", "last_inbound", "last_outbound"):
        ts = getattr(found, name)
        view[name] = datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M") if ts else ""
    return view


# -- persona -------------------------------------------------------------------------------------


def persona_root(ctx: Context) -> Path:
    return Path(ctx.settings.bot.persona_dir)


def persona_limits(ctx: Context) -> tuple[int, Path]:
    """The bot's output cap, and the editor's own compiled-code cache (the bot's is its own
    thread's to write)."""
    bot = ctx.settings.bot
    return bot.persona_max_chars, Path(bot.data_dir) / "cache" / "persona-trial.bin"


async def reload_persona(ctx: Context) -> list[str]:
    """The hot reload the bot's poller and the reload command run (App.reload_persona...)."""
    return [str(error) for error in await ctx.app.reload_persona_in_worker()]
