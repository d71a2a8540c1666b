"""What the referral plugin keeps for one App: its tables, the rules file (last good
version), the poster font, and the kv marks of codes to hand out by rule."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from pond import Context, Namespace, Outcome, Problem, SqlStore

from . import codes, rules
from .config import ReferralConfig
from .db import ReferralDB

log = logging.getLogger("pond.plugins.referral")
ISSUE = "issue:"  # issue:<contact> a code to send because of a tag (rules.toml [issue])


class ReferralState:
    def __init__(self, sql: SqlStore, kv: Namespace, persona_dir: Path, code_length: int) -> None:
        self.db = ReferralDB(sql.engine, sql.metadata)
        self.kv = kv
        self.persona_dir = persona_dir
        self.rules = rules.Rules()
        self.stamp: tuple[int, int] | None = None
        self.font: str | None = None
        self.font_alerted = False
        # accepts handed to the outbox by a tick, finished at the next one
        self.inflight: dict[str, tuple[asyncio.Future[Outcome], dict[str, Any]]] = {}
        self.code_length = code_length

    @property
    def rules_path(self) -> Path:
        return self.persona_dir / "referral" / "rules.toml"

    def load_rules(self, *, force: bool = False) -> Problem | None:
        """Re-read rules.toml when it changed; a bad file keeps the last good rules."""
        path = self.rules_path
        try:
            st = os.stat(path)
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self.stamp and not force:
            return None
        self.stamp = stamp
        try:
            self.rules = rules.load(path, "persona/referral/rules.toml")
        except Problem as problem:
            log.error("referral rules refused, the last good version keeps serving")
            return problem
        return None

    def code_for(self, contact_id: str, at: float) -> str:
        """The customer's code, drawn on first use (unique: a taken draw is drawn again)."""
        found = self.db.code_of(contact_id)
        while found is None:
            code = codes.new_code(self.code_length)
            if self.db.add_code(contact_id, code, at):
                return code
            found = self.db.code_of(contact_id)  # another draw, or a clash with a code
        return found

    def owner(self, hello: str) -> tuple[str, str] | None:
        """(code, inviter) of the first live code in a friend request's hello."""
        for code in codes.find(hello, self.code_length):
            owner = self.db.owner_of(code)
            if owner is not None:
                return code, owner
        return None


# What the plugin's handlers and helpers get: typed config and state.
Ctx = Context[ReferralConfig, ReferralState]
