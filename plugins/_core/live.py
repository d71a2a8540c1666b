"""The opt-out matcher in service for one App (the core plugin's state): loaded at
start-up, re-read when persona/core/optout.toml changes (a broken edit keeps the last good
version and is logged with the file and line), plus the confirmations the bot is waiting
for ("要退订吗？")."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from plugins._core.optout import FILE, Matcher, OptoutDataError, Verdict, load
from pond import Context, Message

log = logging.getLogger("pond.plugins.core")
RELOAD_S = 2.0
CONFIRM_S = 600.0  # how long a "要退订吗？" waits for its yes
MAX_PENDING = 5000


class Live:
    def __init__(self, ctx: Context[Any, Any]) -> None:
        persona_dir = ctx.settings.bot.persona_dir
        self.path: Path = persona_dir / "core" / FILE
        self.label = f"{persona_dir.name or persona_dir}/core/{FILE}"
        self.optout_words = ctx.settings.outbox.optout_keywords
        self.optin_words = ctx.settings.outbox.optin_keywords
        # Read by start() (the on_startup hook), so the command line, which builds the
        # state but runs no start-up, is not stopped by a broken file.
        self.matcher: Matcher | None = None
        self.stamp: tuple[int, int] | None = None
        self.checked_at = 0.0
        self.asked: dict[str, float] = {}  # contact id -> when we asked "要退订吗？"
        self._last: tuple[str, Verdict] = ("", Verdict.NONE)

    def start(self, now: float) -> None:
        """Read the words; a broken file stops start-up naming file and line."""
        self.matcher = self._load()
        self.stamp = self._stat()
        self.checked_at = now

    def _load(self) -> Matcher:
        return load(self.path, self.label, self.optout_words, self.optin_words)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def poll(self, now: float) -> None:
        if self.matcher is None or now - self.checked_at < RELOAD_S:
            return
        self.checked_at = now
        stamp = self._stat()
        if stamp == self.stamp:
            return
        self.stamp = stamp
        try:
            self.matcher = self._load()
        except OptoutDataError as error:
            log.error(
                "opt-out words change refused, the last good version keeps serving: %s", error
            )
            return
        self._last = ("", Verdict.NONE)
        log.info("opt-out words reloaded from %s", self.label)

    def verdict(self, event: Message, now: float) -> Verdict:
        """What the message says about subscribing; a yes counts only right after we asked.
        Cached per message id: several routes ask about the same message."""
        if self._last[0] == event.id:
            return self._last[1]
        self.poll(now)
        if self.matcher is None:
            return Verdict.NONE
        found = self.matcher.judge(event.text)
        if found is Verdict.YES:
            asked = self.asked.get(event.sender.id)
            found = (
                Verdict.OPT_OUT if asked is not None and now - asked < CONFIRM_S else Verdict.NONE
            )
        self._last = (event.id, found)
        return found

    def ask(self, contact_id: str, now: float) -> None:
        if len(self.asked) >= MAX_PENDING:
            self.asked = {k: t for k, t in self.asked.items() if now - t < CONFIRM_S}
        self.asked[contact_id] = now

    def settle(self, contact_id: str) -> None:
        self.asked.pop(contact_id, None)


def build(ctx: Context[Any, Any]) -> Live:
    """The core plugin's state (its words are read by Live.start at start-up)."""
    return Live(ctx)


def live(ctx: Context[Any, Any]) -> Live | None:
    """The matcher in service, from any plugin's Context (the negation guard of
    plugins/_core/intent.py is shared); None where the core plugin has no state yet (the
    command line)."""
    found = ctx.plugin_state("core")
    return found if isinstance(found, Live) else None
