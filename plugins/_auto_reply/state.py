"""Per-App state of the auto_reply plugin (Plugin(state=build_state), ctx.state): the data
in service, its hot reload, and the choice of a rule for a message.

The persona keys the data names are declared by the plugin (its own keys and prefixes,
Plugin(persona_prefixes=...)) and checked when the data loads, so a rule naming a key the
plugin may not render is refused with the file and line, like a missing template."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugins._auto_reply import data as datafile
from plugins._auto_reply.config import AutoReplyConfig
from plugins._auto_reply.data import Data, DataError, Keys, Product, Rule
from plugins._auto_reply.llm import LlmClient
from plugins._auto_reply.match import find_products, in_scope, text_matches
from plugins._auto_reply.memory import Memory
from plugins._auto_reply.offers import Offers
from pond import Context, PersonaError

if TYPE_CHECKING:
    from datetime import datetime

log = logging.getLogger("pond.plugins.auto_reply")
Choice = tuple[Rule | None, list[Product]]


class State:
    def __init__(self, ctx: Context[AutoReplyConfig, Any]) -> None:
        cfg = ctx.config
        persona_dir = ctx.settings.bot.persona_dir
        self.folder: Path = persona_dir / "auto_reply"
        self.label = f"{persona_dir.resolve().name or persona_dir}/auto_reply"
        plugin = ctx.plugin
        self.keys = Keys(
            exists=ctx.persona.has,
            declared=plugin.declares,
            allowed=plugin.persona_prefixes,
        )
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

    def load(self, ctx: Ctx) -> Data:
        """Load and install the data; raises DataError (start-up turns it into a refusal)."""
        self.snapshot = self._stat()
        loaded = datafile.load(self.folder, self.label, self.keys)
        self._install(ctx, loaded)
        return loaded

    def _install(self, ctx: Ctx, loaded: Data) -> None:
        self.data = loaded
        self.persona_version = ctx.persona.version

    def poll(self, ctx: Ctx, *, force: bool = False) -> None:
        """Reload the data files when they (or the persona templates) changed. A broken
        edit keeps the last good data serving and tells the admins where the error is."""
        now = ctx.now.timestamp()
        self.offers.refresh(ctx, force=force)
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
            loaded = datafile.load(self.folder, self.label, self.keys)
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

    def alert(self, ctx: Ctx, error: DataError | PersonaError) -> None:
        """Tell the admins once per problem and persona version (not once per message)."""
        marker = (f"{error.file}:{error.line}:{error.reason}", ctx.persona.version)
        if marker in self._alerted:
            return
        if len(self._alerted) > 1000:
            self._alerted.clear()
        self._alerted.add(marker)
        kept = isinstance(error, DataError)
        ctx.alert(
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


Ctx = Context[AutoReplyConfig, State]


def build_state(ctx: Context[AutoReplyConfig, Any]) -> State:
    return State(ctx)


def stored_int(value: object) -> int:
    """A counter read back from the plugin's key/value store (0 when absent or not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


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
