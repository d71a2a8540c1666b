"""Per-App state of the auto_reply plugin: the data in service, its hot reload, the choice
of an answer for a message, and the plugin "view" that declares the data's persona keys.

The plugin object is a module-level singleton shared by every App in the process (tests
start many), so nothing App-specific is stored on it: the keys named by the data are
declared on a shallow copy (`view`) that handlers render through."""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from plugins._auto_reply import data as datafile
from plugins._auto_reply.data import Data, DataError, Product, Rule
from plugins._auto_reply.llm import LlmClient
from plugins._auto_reply.match import find_products, in_scope, text_matches
from plugins._auto_reply.memory import Memory
from plugins._auto_reply.offers import Offers
from pond import App, Context, Event, PersonaError, Plugin

if TYPE_CHECKING:
    from datetime import datetime

log = logging.getLogger("pond.plugins.auto_reply")
Choice = tuple[Rule | None, list[Product]]


class State:
    def __init__(self, ctx: Context) -> None:
        cfg = ctx.config
        persona_dir = ctx.settings.bot.persona_dir
        self.folder: Path = persona_dir / "auto_reply"
        self.label = f"{persona_dir.resolve().name or persona_dir}/auto_reply"
        self.plugin: Plugin = ctx.plugin
        self.view: Plugin = ctx.plugin
        self.data: Data | None = None
        self.memory = Memory(cfg.history_size)
        self.snapshot: dict[str, tuple[int, int] | None] = {}
        self.persona_version = 0
        self.checked_at = -math.inf
        self.reloads: dict[str, Any] = {}  # the last reload's outcome, for the status command
        self.llm: LlmClient | None = None
        self.llm_failures = 0
        self.llm_off_until = 0.0
        self.llm_alerted_at = -math.inf
        self._alerted: set[tuple[str, int]] = set()
        self.ticket_chats: set[str] | None = None  # see staff.ticket_chats
        self.offers = Offers()  # calls to action of recent broadcasts and posts

    # -- loading -------------------------------------------------------------------------
    def _stat(self) -> dict[str, tuple[int, int] | None]:
        found: dict[str, tuple[int, int] | None] = {}
        for name in (datafile.RULES_FILE, datafile.CATALOG_FILE):
            try:
                st = (self.folder / name).stat()
                found[name] = (st.st_mtime_ns, st.st_size)
            except OSError:
                found[name] = None
        return found

    def load(self, ctx: Context) -> Data:
        """Load and install the data; raises DataError (start-up turns it into a refusal)."""
        self.snapshot = self._stat()
        loaded = datafile.load(self.folder, self.label, ctx.persona.has)
        self._install(ctx, loaded)
        return loaded

    def _install(self, ctx: Context, loaded: Data) -> None:
        self.data = loaded
        self.declare(ctx)
        self.persona_version = ctx.persona.version

    def declare(self, ctx: Context) -> None:
        """The keys the data and the live calls to action answer with, on the view."""
        keys = set(self.data.keys()) if self.data is not None else set()
        keys |= {key for key in self.offers.answer_keys() if ctx.persona.has(key)}
        view = copy.copy(self.plugin)
        view.persona_keys = tuple(dict.fromkeys([*self.plugin.persona_keys, *sorted(keys)]))
        self.view = view

    def poll(self, ctx: Context, *, force: bool = False) -> None:
        """Reload the data files when they (or the persona templates) changed. A broken
        edit keeps the last good data serving and tells the admins where the error is."""
        now = ctx.now.timestamp()
        if self.offers.refresh(ctx, force=force):
            self.declare(ctx)
        if not force and now - self.checked_at < ctx.config.reload_s:
            return
        self.checked_at = now
        snapshot = self._stat()
        files_changed = snapshot != self.snapshot
        if not files_changed and ctx.persona.version == self.persona_version:
            return
        self.snapshot = snapshot
        self.persona_version = ctx.persona.version
        try:
            loaded = datafile.load(self.folder, self.label, ctx.persona.has)
        except DataError as error:
            log.error(
                "auto-reply data change refused, the last good version keeps serving: %s", error
            )
            self.reloads = {"ok": False, "file": error.file, "line": error.line or 0}
            ctx.record("data_reload", ok=False, file=error.file, line=error.line or 0)
            self.alert(ctx, error)
            return
        self._install(ctx, loaded)
        self.reloads = {"ok": True, "file": "", "line": 0}
        if files_changed:
            rules, products = len(loaded.rules), len(loaded.catalog.products)
            log.info("auto-reply data reloaded: %d rules, %d products", rules, products)
            ctx.record("data_reload", ok=True, rules=rules, products=products)

    def alert(self, ctx: Context, error: DataError | PersonaError) -> None:
        """Tell the admins once per problem and persona version (not once per message)."""
        marker = (f"{error.file}:{error.line}:{error.reason}", ctx.persona.version)
        if marker in self._alerted:
            return
        if len(self._alerted) > 1000:
            self._alerted.clear()
        self._alerted.add(marker)
        kept = isinstance(error, DataError)
        ctx.app.alert(
            "auto_reply/data_alert",
            file=error.file,
            line=error.line or 0,
            reason=str(error.reason),
            kept=kept,
        )

    # -- choosing an answer ------------------------------------------------------------------
    def choose(self, text: str, scope: str, room_id: str, is_open: bool) -> Choice | None:
        """The rule (or the products, for the guide) that answers `text`, by priority.
        A rule limited to business hours still wins in a private chat at night: the
        handler then gives the off-hours answer. In rooms such a rule is skipped."""
        data = self.data
        if data is None or not text:
            return None
        guide = data.guide
        guide_tried = False
        for rule in data.rules:
            if not guide_tried and rule.priority < guide.priority:
                guide_tried = True
                products = self.products(text, scope, room_id)
                if products:
                    return None, products
            if rule.hours == "closed" and is_open:
                continue
            if rule.hours == "open" and not is_open and scope != "private":
                continue
            if in_scope(rule.scope, rule.rooms, scope, room_id) and text_matches(rule, text):
                return rule, []
        if not guide_tried:
            products = self.products(text, scope, room_id)
            if products:
                return None, products
        return None

    def products(self, text: str, scope: str, room_id: str) -> list[Product]:
        data = self.data
        if data is None or not in_scope(data.guide.scope, data.guide.rooms, scope, room_id):
            return []
        return find_products(data.catalog, text, data.guide.max_cards)

    def context(self, ctx: Context, event: Event | None = None) -> Context:
        """A context that may render the persona keys the data names."""
        return Context(ctx.app, self.view, event if event is not None else ctx.event)


_states: WeakKeyDictionary[App, State] = WeakKeyDictionary()


def state(ctx: Context) -> State:
    found = _states.get(ctx.app)
    if found is None:
        found = _states[ctx.app] = State(ctx)
    return found


def opening(data: Data, now: datetime) -> dict[str, Any]:
    """Template variables saying when the shop opens next."""
    moment = data.hours.next_open(now)
    if moment is None:
        return {
            "open": False,
            "opens_at": "",
            "opens_in_days": -1,
            "opens_month": 0,
            "opens_day": 0,
        }
    return {
        "open": data.hours.is_open(now),
        "opens_at": moment.strftime("%H:%M"),
        "opens_in_days": (moment.date() - now.date()).days,
        "opens_month": moment.month,
        "opens_day": moment.day,
    }
