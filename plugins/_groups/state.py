"""What the groups plugin keeps for one App: the rooms file, the SQL tables, and small
in-memory mirrors of durable state so a room message costs no database read.

Durable (plugin key/values, written only when they change, never per message):
  pending:<room>    welcome batch waiting for its window/cooldown
  welcomed:<room>   time of the room's last welcome (cooldown)
  rules:<room>      time of the room's last rules post (keyword cooldown)
  cron:<room>       time the room's rules schedule was last served
  size:<room>       member count (the transport's figure when it gives one)
  dry_run, dry_run:<room>   operators' dry-run switches (override rooms.toml)
  rolled_until      start of the first hour not yet summarised"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pond import Contact, Context, Namespace, Room

from .db import GroupsDB
from .moderation import FloodTracker
from .rooms import RoomConfig, RoomsFile


@dataclass
class Joiner:
    id: str
    name: str
    at: float
    friend: bool

    def dump(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "at": self.at, "friend": self.friend}


@dataclass
class Batch:
    first: float
    members: list[Joiner]

    def dump(self) -> dict[str, Any]:
        return {"first": self.first, "members": [m.dump() for m in self.members]}

    @classmethod
    def load(cls, value: object) -> Batch | None:
        if not isinstance(value, dict):
            return None
        try:
            members = [
                Joiner(str(m["id"]), str(m.get("name", "")), float(m["at"]), bool(m["friend"]))
                for m in value["members"]
            ]
            return cls(float(value["first"]), members)
        except (KeyError, TypeError, ValueError):
            return None


def _floats(kv: Namespace, prefix: str) -> dict[str, float]:
    found = {}
    for key, value in kv.items(prefix):
        if isinstance(value, int | float):
            found[key.removeprefix(prefix)] = float(value)
    return found


@dataclass(frozen=True)
class GroupsConfig:
    rooms_file: Path = Path("groups/rooms.toml")  # relative to BOT_PERSONA_DIR
    welcome_window_s: float = 30.0
    welcome_cooldown_s: float = 300.0
    welcome_max_mentions: int = 20
    welcome_max_age_min: float = 60.0
    member_limit: int = 480
    invite_hold_h: float = 24.0
    dry_run: bool = False
    strike_ttl_h: float = 168.0
    rules_cooldown_s: float = 120.0


class GroupsState:
    def __init__(self, rooms: RoomsFile, db: GroupsDB, kv: Namespace) -> None:
        self.file = rooms
        self.db = db
        self.kv = kv
        self.flood = FloodTracker()
        self.members: dict[str, dict[str, float | None]] = db.active()
        self.sizes = {k: int(v) for k, v in _floats(kv, "size:").items()}
        self.welcomed_at = _floats(kv, "welcomed:")
        self.rules_at = _floats(kv, "rules:")
        self.cron_since = _floats(kv, "cron:")
        self.pending: dict[str, Batch] = {}
        for key, value in kv.items("pending:"):
            batch = Batch.load(value)
            if batch is not None:
                self.pending[key.removeprefix("pending:")] = batch
        self.dry_run_overrides: dict[str, bool] = {
            key: bool(value) for key, value in kv.items("dry_run") if isinstance(value, bool)
        }
        self.topics: dict[str, str] = {}
        self.full_alerted: dict[str, float] = {}
        # (the rooms it was built from, keyword -> rooms in overflow order); see invites.py
        self.invite_index: tuple[dict[str, RoomConfig], dict[str, list[RoomConfig]]] | None = None

    # -- configuration -------------------------------------------------------------------
    @property
    def rooms(self) -> dict[str, RoomConfig]:
        return self.file.rooms

    def room(self, room_id: str | None) -> RoomConfig | None:
        return self.file.rooms.get(room_id) if room_id else None

    def label(self, room_id: str) -> str:
        room = self.file.rooms.get(room_id)
        return (room.name if room else "") or self.topics.get(room_id, "") or room_id

    def dry_run(self, room: RoomConfig) -> bool:
        """Operators' switch for the room, else their switch for all rooms, else the file."""
        for key in (f"dry_run:{room.id}", "dry_run"):
            if key in self.dry_run_overrides:
                return self.dry_run_overrides[key]
        return room.dry_run

    def set_dry_run(self, on: bool, room_id: str | None) -> None:
        if room_id is None:  # everywhere: room switches give way to the global one
            for key in [k for k in self.dry_run_overrides if k.startswith("dry_run:")]:
                del self.dry_run_overrides[key]
                self.kv.delete(key)
            key = "dry_run"
        else:
            key = f"dry_run:{room_id}"
        self.dry_run_overrides[key] = on
        self.kv.set(key, on)

    # -- membership and size -------------------------------------------------------------
    def note_room(self, room: Room) -> None:
        """Topic for display, and the transport's member count when it gives one."""
        if room.topic:
            self.topics[room.id] = room.topic
        if room.member_count > 0 and self.sizes.get(room.id) != room.member_count:
            self.set_size(room.id, room.member_count)

    def set_size(self, room_id: str, size: int) -> None:
        self.sizes[room_id] = max(0, size)
        self.kv.set(f"size:{room_id}", self.sizes[room_id])

    def size(self, room_id: str) -> int:
        if room_id in self.sizes:
            return self.sizes[room_id]
        return len(self.members.get(room_id, {}))

    def is_member(self, room_id: str, contact_id: str) -> bool:
        return contact_id in self.members.get(room_id, {})

    def joined_at(self, room_id: str, contact_id: str) -> float | None:
        return self.members.get(room_id, {}).get(contact_id)

    def spoke(self, room_id: str, contact: Contact) -> None:
        """A sender is a member: remember it once (a database write per new member only)."""
        room_members = self.members.setdefault(room_id, {})
        if contact.id not in room_members:
            room_members[contact.id] = None
            self.db.seen(room_id, contact.id, contact.name)

    def joined(self, room_id: str, contact: Contact, at: float) -> bool:
        self.members.setdefault(room_id, {})[contact.id] = at
        return self.db.joined(room_id, contact.id, contact.name, at)

    def left(self, room_id: str, contact_id: str, at: float) -> None:
        self.members.get(room_id, {}).pop(contact_id, None)
        self.db.left(room_id, contact_id, at)
        self.flood.forget(room_id, contact_id)
        self.unwelcome(room_id, contact_id)

    def unwelcome(self, room_id: str, contact_id: str) -> None:
        """Take someone out of the room's pending welcome (they left, or are being removed)."""
        batch = self.pending.get(room_id)
        if batch is not None and any(m.id == contact_id for m in batch.members):
            # Gone before the welcome went out: do not greet someone who left.
            batch.members = [m for m in batch.members if m.id != contact_id]
            self.save_batch(room_id, batch if batch.members else None)

    # -- welcome batches -----------------------------------------------------------------
    def add_joiners(self, room_id: str, joiners: list[Joiner], now: float) -> None:
        batch = self.pending.get(room_id) or Batch(now, [])
        known = {m.id for m in batch.members}
        batch.members.extend(j for j in joiners if j.id not in known)
        self.save_batch(room_id, batch)

    def save_batch(self, room_id: str, batch: Batch | None) -> None:
        if batch is None:
            self.pending.pop(room_id, None)
            self.kv.delete(f"pending:{room_id}")
        else:
            self.pending[room_id] = batch
            self.kv.set(f"pending:{room_id}", batch.dump())

    def stamp(self, what: str, room_id: str, at: float) -> None:
        """Remember `welcomed`, `rules` or `cron` time for a room, durably."""
        {"welcomed": self.welcomed_at, "rules": self.rules_at, "cron": self.cron_since}[what][
            room_id
        ] = at
        self.kv.set(f"{what}:{room_id}", at)


Ctx = Context[GroupsConfig, GroupsState]
