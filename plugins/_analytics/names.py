"""Display names for rooms and channels: what operators call them, not ids.

Rooms: the name in groups/rooms.toml, else the topic the analytics plugin last saw (kv
namespace "analytics", key "room:<id>"), else the id. Channels: friends/channels.toml.
A broken or missing file only costs names (ids are shown), never the report."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

from .data import Source
from .facts import Names

log = logging.getLogger("pond.plugins.analytics")

TOPICS_NAMESPACE = "analytics"
TOPIC_PREFIX = "room:"


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        log.warning("%s: names not read (%s)", path, error)
        return {}


def load_names(persona_dir: Path, source: Source | None = None) -> Names:
    rooms: dict[str, str] = {}
    if source is not None:
        for key, value in source.kv_items(TOPICS_NAMESPACE, TOPIC_PREFIX):
            if isinstance(value, str) and value:
                rooms[key.removeprefix(TOPIC_PREFIX)] = value
    configured = _toml(persona_dir / "groups" / "rooms.toml").get("rooms", {})
    if isinstance(configured, dict):
        for room_id, spec in configured.items():
            if isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec["name"]:
                rooms[room_id] = spec["name"]
    channels = {
        code: str(spec.get("name") or code)
        for code, spec in _toml(persona_dir / "friends" / "channels.toml").items()
        if isinstance(spec, dict)
    }
    # Friends who came with an invite code (the referral plugin's default REFERRAL_CHANNEL);
    # channels.toml may name it otherwise.
    channels.setdefault("referral", "老带新（邀请码）")
    return Names(rooms=rooms, channels=channels)
