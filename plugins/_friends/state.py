"""Per-App state of the friends plugin: data files, tables, the kv namespace and the
write-behind buffer of room members."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from plugins._friends import tables
from plugins._friends.config import FriendsConfig
from plugins._friends.data import DataFiles, KeyCheck
from pond import Context, Namespace, Outcome, Problem, SqlStore

log = logging.getLogger("pond.plugins.friends")


class FriendsState:
    def __init__(self, sql: SqlStore, kv: Namespace, config: FriendsConfig, persona: Path) -> None:
        self.config = config
        self.kv = kv
        self.tables = tables.create(sql.engine, sql.metadata)
        self.engine = sql.engine
        self.data = DataFiles(persona / "friends", "persona/friends")
        # (room id, contact id) -> (name, is_friend, seen at, left): flushed by the tick.
        self.members: dict[tuple[str, str], tuple[str, bool, float, bool]] = {}
        # Accepts handed to the outbox by a job: ticket -> (outcome, what was accepted).
        self.inflight: dict[str, tuple[asyncio.Future[Outcome], dict[str, Any]]] = {}
        self.ticks = 0
        self.run = secrets.token_hex(4)  # tells this run's durable marks from older ones
        self.said: set[str] = set()  # log-once reasons

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


# What the plugin's handlers and helpers get: typed config and state.
Ctx = Context[FriendsConfig, FriendsState]


def key_checker(ctx: Ctx) -> KeyCheck:
    """Follow-up steps name their copy: the key must be under the plugin's declared prefix
    (friends/) and have a template (ctx.check_keys), told in the file's own words."""

    def check(key: str) -> Problem | None:
        found = ctx.check_keys([key])
        if not found:
            return None
        if found[0].code == "persona.undeclared":
            return Problem(
                "friends.key_folder",
                "key {key!r}: follow-up copy lives in persona/friends/, so the key starts with "
                "friends/",
                key=key,
            )
        return Problem(
            "friends.key_missing", "key {key!r}: there is no template persona/{key}.j2", key=key
        )

    return check
