"""Per-App state of the friends plugin: data files, tables, the kv namespace and the
write-behind buffer of room members."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from plugins._friends import tables
from plugins._friends.data import DataFiles
from pond import Problem

if TYPE_CHECKING:
    from pond import App, Outcome, Plugin

log = logging.getLogger("pond.plugins.friends")
KV = "friends"


class FriendsState:
    def __init__(self, app: App, plugin: Plugin, config: Any) -> None:
        self.app = app
        self.plugin = plugin
        self.config = config
        self.kv = app.store.namespace(KV)
        self.tables = tables.create(app.store.sql.engine, app.store.sql.metadata)
        self.engine = app.store.sql.engine
        self.base_keys = tuple(plugin.persona_keys)
        self.data = DataFiles(
            app.settings.bot.persona_dir / "friends", "persona/friends", self.check_key
        )
        # (room id, contact id) -> (name, is_friend, seen at, left): flushed by the tick.
        self.members: dict[tuple[str, str], tuple[str, bool, float, bool]] = {}
        # Accepts handed to the outbox by a job: ticket -> (outcome, what was accepted).
        self.inflight: dict[str, tuple[asyncio.Future[Outcome], dict[str, Any]]] = {}
        self.ticks = 0
        self.run = secrets.token_hex(4)  # tells this run's durable marks from older ones
        self.said: set[str] = set()  # log-once reasons

    # -- data files ----------------------------------------------------------------------
    def check_key(self, key: str) -> Problem | None:
        if not key.startswith("friends/"):
            return Problem(
                "friends.key_folder",
                "key {key!r}: follow-up copy lives in persona/friends/, so the key starts with "
                "friends/",
                key=key,
            )
        if not self.app.persona.has(key):
            return Problem(
                "friends.key_missing",
                "key {key!r}: there is no template persona/{key}.j2",
                key=key,
            )
        return None

    def use_followup_keys(self) -> None:
        """Follow-up keys come from data: declare them so ctx.render accepts them."""
        keys = dict.fromkeys([*self.base_keys, *sorted(self.data.followups.keys())])
        self.plugin.persona_keys = tuple(keys)

    def once(self, reason: str) -> bool:
        if reason in self.said:
            return False
        self.said.add(reason)
        return True

    # -- room members (write-behind) -------------------------------------------------------
    def note_member(
        self, room_id: str, contact_id: str, name: str, friend: bool, at: float, left: bool = False
    ) -> None:
        self.members[(room_id, contact_id)] = (name, friend, at, left)

    def flush_members(self) -> int:
        if not self.members:
            return 0
        batch, self.members = self.members, {}
        m = self.tables.members
        with self.engine.begin() as conn:
            for (room_id, contact_id), (name, friend, at, left) in batch.items():
                values: dict[str, Any] = {"last_seen": at, "is_friend": friend}
                if name:
                    values["name"] = name
                values["left_at"] = at if left else None
                updated = conn.execute(
                    sa.update(m)
                    .where(m.c.room_id == room_id, m.c.contact_id == contact_id)
                    .values(**values)
                ).rowcount
                if not updated:
                    conn.execute(
                        sa.insert(m).values(
                            room_id=room_id,
                            contact_id=contact_id,
                            name=name or "",
                            is_friend=friend,
                            last_seen=at,
                            left_at=at if left else None,
                        )
                    )
        return len(batch)
