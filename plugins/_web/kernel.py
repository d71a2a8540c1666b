"""The web admin's one adapter to the kernel, through its Context only.

Pages call these functions, never the kernel directly. No logic of its own lives here: each
function calls the code the chat commands and the CLI call (the command layer, the review
sources every plugin declares, the status sources, the customer book's search)."""

from __future__ import annotations

import dataclasses
import itertools
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pond import (
    ActionClass,
    Command,
    Contact,
    Context,
    HumanTakeover,
    LoginGuard,  # the binding code's guard against guessing
    LoginLimits,
    config_sections,
    env_key,
)


def checking(ctx: Context) -> bool:
    """`bot.py --check`: nothing is served (the running bot may hold the port)."""
    return ctx.checking


# -- live login state (the transport's status reports) ---------------------------------------

_status: dict[str, Any] = {"status": "", "data": {}, "n": 0}


def watch_transport(ctx: Context) -> None:
    """Follow the transport's status reports next to the App (which records them and
    alerts the admins): the 账号 page needs the newest QR code as soon as it is issued."""
    _status.update(status="", data={}, n=0)  # what an earlier App in this process heard

    def watcher(status: str, data: dict[str, Any]) -> None:
        _status.update(status=status, data=dict(data), n=int(_status["n"]) + 1)

    ctx.on_transport_status(watcher)


def login_qr(ctx: Context) -> Path | None:
    """The PNG of the QR code waiting to be scanned, while the transport says one is."""
    if _status["status"] != "scan":
        return None
    png = str(_status["data"].get("qr_png") or "")
    path = Path(png) if png else None
    return path if path is not None and path.is_file() else None


async def account(ctx: Context) -> dict[str, Any]:
    """What the status command shows (every plugin's status part; the admin plugin's is
    the account's), plus the newest transport report and the QR code's version (the page
    reloads the image when it moves)."""
    live = ctx.liveness()
    found: dict[str, Any] = {
        "transport": live.transport,
        "connected": live.connected,
        "queue": live.queue,
        "login": {},
        "breaker": {"open": False, "trips": 0},
        "counters": [],
        "paused_all": None,
    }
    found.update(await ctx.status())
    found["status"] = str(_status["status"])
    found["qr_version"] = int(_status["n"]) if login_qr(ctx) else 0
    found["self_id"] = ctx.self_id
    return found


# -- the command layer -------------------------------------------------------------------------

_ids = itertools.count(1)


def operator(user_id: str, name: str) -> Contact:
    """The web user as the sender of a command: audited as web:<id>, never a WeChat id."""
    return Contact(id=f"web:{user_id}", name=name)


async def run_command(ctx: Context, who: Contact, name: str, *args: str) -> list[tuple[str, str]]:
    """Run an operator command exactly as the CLI does (audit, argument checks, errors),
    with its answer returned for the page instead of printed: [(persona key, text)]."""
    command = Command(
        name,
        tuple(args),
        " ".join(args),
        who,
        ctx.now,
        id=f"web-{next(_ids)}",
        origin="cli",  # Context.reply prints (here: captures) instead of messaging anyone
    )
    return await ctx.run_command(command)


async def run_command_data(
    ctx: Context, who: Contact, name: str, *args: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """run_command with each answer's template variables too, for pages that draw them."""
    command = Command(
        name, tuple(args), " ".join(args), who, ctx.now, id=f"web-{next(_ids)}", origin="cli"
    )
    return await ctx.run_command_data(command)


def has_command(ctx: Context, name: str) -> bool:
    return name in ctx.commands.specs


# -- hand-offs (auto_reply's tickets) -----------------------------------------------------------


async def tickets(ctx: Context) -> list[dict[str, Any]]:
    """Customers waiting for a person: the hand-off items auto_reply lists for review (the
    operator's 待办 shows the same)."""
    now = ctx.now.timestamp()
    paused = ctx.pauses.active()
    rows = []
    for _plugin, item in await ctx.reviews():
        if item.kind != "handoff":
            continue
        chat_id = item.args[0] if item.args else item.contact_id
        entry = paused.get(chat_id)
        rows.append(
            {
                "no": item.ref,
                "customer": item.title,
                "contact_id": item.contact_id,
                "chat_id": chat_id,
                "reason": item.detail,
                "minutes": int((now - item.at) // 60) if item.at else 0,
                "paused": entry[1] if entry else "",
                # staff answering (here or on the phone) pause the chat as a takeover
                "answered": entry is not None and entry[1] == "takeover",
            }
        )
    return rows


async def staff_reply(ctx: Context, who: Contact, chat_id: str, text: str) -> None:
    """A person answers the customer: the text goes out as a reply through the outbox and
    its governor (the web plugin's persona key), and the chat is then handled as when
    staff type on the phone: the transport's HumanTakeover event goes through App.dispatch,
    so the kernel pauses the chat (BOT_TAKEOVER_PAUSE_MIN) and auto_reply marks the ticket
    answered, by the very code that handles a takeover."""
    await ctx.send(chat_id, "web/staff_reply", cls=ActionClass.REPLY, contact_id=chat_id, text=text)
    takeover = HumanTakeover(chat_id, ctx.now, id=f"web-{who.id}-{secrets.token_hex(8)}")
    await ctx.dispatch(takeover)


# -- login lock-out ------------------------------------------------------------------------------


def login_guard(ctx: Context) -> LoginGuard:
    """The binding code's guard (per name, and everyone together), on the web's own store."""
    cfg = ctx.config
    limits = LoginLimits(
        ttl=timedelta(0),  # no code here: only the counting and the lock are used
        tries=cfg.login_tries,
        tries_total=cfg.login_tries * 50,  # a lock on everyone would lock the owner out too
        lock=timedelta(minutes=cfg.login_lock_min),
    )
    return LoginGuard(ctx.store, limits)


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
        (prefix, getattr(settings, prefix.lower())) for prefix, _ in config_sections()
    ]
    for name, config in ctx.plugin_configs().items():
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
    login_guard(ctx).forget(key)


# -- customers -----------------------------------------------------------------------------------


def find_customers(ctx: Context, text: str, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
    """The customer book's search, the one the admin find command uses."""
    tz = ctx.clock.tz
    matches, total = ctx.book.search(text, limit)
    views = [
        {
            "id": c.id,
            "name": c.name,
            "alias": c.alias,
            "tags": sorted(c.tags)[:6],
            "last": datetime.fromtimestamp(c.last_inbound, tz).strftime("%m-%d")
            if c.last_inbound
            else "",
        }
        for c in matches
    ]
    return views, total


def customer(ctx: Context, contact_id: str) -> dict[str, Any] | None:
    found = ctx.book.get(contact_id)
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
    """The hot reload the bot's poller and the reload command run."""
    return await ctx.reload_persona()


# -- 群发 (the broadcasts plugin's campaigns) -----------------------------------------------------

CAMPAIGN_ID = r"^[a-z0-9][a-z0-9_-]{0,47}$"  # the broadcasts plugin's campaign names


def broadcasts_config(ctx: Context) -> Any | None:
    return ctx.plugin_configs().get("broadcasts")


def campaigns_dir(ctx: Context) -> Path | None:
    """The folder the broadcasts plugin reads campaign files from (BROADCASTS_CAMPAIGNS_DIR,
    else persona/broadcasts/campaigns), or None without that plugin."""
    config = broadcasts_config(ctx)
    if config is None:
        return None
    configured = str(getattr(config, "campaigns_dir", "") or "")
    if configured:
        return Path(configured)
    return persona_root(ctx) / "broadcasts" / "campaigns"


def copy_keys(ctx: Context) -> list[str]:
    """The persona keys a campaign may use as its copy (BROADCASTS_COPY_PREFIXES)."""
    config = broadcasts_config(ctx)
    prefixes = tuple(getattr(config, "copy_prefixes", ()) or ())
    known: list[str] = ctx.persona.keys()
    return sorted(k for k in known if prefixes and k.startswith(prefixes))


async def campaigns(ctx: Context) -> list[dict[str, str]]:
    """Every campaign the operator can act on: the files in the campaigns folder, and the
    created campaigns the broadcasts plugin lists for review (draft, blocked, paused) or on
    its agenda (scheduled, sending)."""
    import re

    found: dict[str, dict[str, str]] = {}
    folder = campaigns_dir(ctx)
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob("*.toml")):
            if re.match(CAMPAIGN_ID, path.stem) and not path.is_symlink():
                found[path.stem] = {"id": path.stem, "title": "", "kind": "file"}
    for plugin, item in await ctx.reviews():
        if plugin == "broadcasts":
            found[item.ref] = {"id": item.ref, "title": item.title, "kind": item.kind}
    for plugin, agenda in await ctx.agenda():
        if plugin == "broadcasts":
            found[agenda.ref] = {"id": agenda.ref, "title": agenda.title, "kind": agenda.kind}
    return sorted(found.values(), key=lambda c: c["id"])


# -- 待处理: what every plugin lists for review (friend requests, staff posts, unknowns...) ------

UNKNOWN_DELIVERY = "unknown_delivery"  # the admin plugin's review kind for an unknown send
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"})


async def review_items(ctx: Context) -> list[dict[str, Any]]:
    """Every review item but the hand-offs (their own section), in the order the operator's
    待办 command numbers them (`n`, what its resolve command refers to)."""
    rows = []
    now = ctx.now.timestamp()
    for n, (plugin, item) in enumerate(await ctx.reviews(), start=1):
        if item.kind == "handoff":
            continue
        rows.append(
            {
                "n": n,
                "plugin": plugin,
                "kind": item.kind,
                "ref": item.ref,
                "minutes": int((now - item.at) // 60) if item.at else 0,
                "contact_id": item.contact_id,
                "room_id": item.room_id,
                "detail": item.detail,
                "title": item.title,
                "command": item.command,
                "args": list(item.args),
                "name": _name_of(ctx, item.contact_id),
            }
        )
    return rows


def _name_of(ctx: Context, contact_id: str) -> str:
    found = ctx.book.get(contact_id) if contact_id else None
    return (found.alias or found.name) if found is not None else ""


async def resolve_unknown(ctx: Context, who: Contact, ref: str, outcome: str) -> list[str]:
    """An `unknown` delivery settled as the chat does it: list the 待办 (the admin plugin
    remembers what each number meant for this operator), then `resolve N outcome`."""
    await run_command(ctx, who, "reviews")
    listed = await ctx.reviews()
    number = next(
        (
            n
            for n, (_p, item) in enumerate(listed, 1)
            if item.kind == UNKNOWN_DELIVERY and item.ref == ref
        ),
        0,
    )
    if not number:
        return []
    return [text for _key, text in await run_command(ctx, who, "resolve", str(number), outcome)]


def calendar_file(ctx: Context) -> Path | None:
    config = ctx.plugin_configs().get("calendar")
    if config is None:
        return None
    path = Path(str(getattr(config, "file", "") or ""))
    return path if path.is_absolute() else persona_root(ctx) / path


def calendar_posts(ctx: Context) -> list[dict[str, Any]]:
    """The posts the calendar file lists (ids as its commands take them: a launch's step is
    <launch>.<step>), with their titles, key dates and picture names; [] without the
    calendar plugin or with a file it cannot read (the calendar plugin reports that)."""
    import tomllib

    path = calendar_file(ctx)
    if path is None or not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []

    def entry(table: dict[str, Any], post_id: str, title: str) -> dict[str, Any]:
        images = table.get("images")
        return {
            "id": post_id,
            "title": str(table.get("title") or title),
            "on": str(table.get("on") or ""),
            "images": [str(i) for i in images] if isinstance(images, list) else [],
        }

    found = []
    for post in data.get("post") or []:
        if isinstance(post, dict) and post.get("id"):
            found.append(entry(post, str(post["id"]), ""))
    for launch in data.get("launch") or []:
        if not isinstance(launch, dict) or not launch.get("id"):
            continue
        for step in launch.get("step") or []:
            if isinstance(step, dict) and step.get("id"):
                post_id = f"{launch['id']}.{step['id']}"
                found.append(entry(step, post_id, str(launch.get("title") or "")))
    return found


def post_images(ctx: Context, post_id: str) -> list[Path]:
    """The pictures the calendar file names for a post, for staff to download: image files
    inside the calendar file's folder or the persona folder, never through a symlink."""
    path = calendar_file(ctx)
    post = next((p for p in calendar_posts(ctx) if p["id"] == post_id), None)
    if path is None or post is None:
        return []
    roots = (path.parent.resolve(), persona_root(ctx).resolve())
    found = []
    for name in post["images"][:9]:
        image = path.parent / name
        if image.is_symlink() or image.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        real = image.resolve()
        if real.is_file() and any(real.is_relative_to(r) for r in roots):
            found.append(real)
    return found
