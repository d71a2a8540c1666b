"""The 企业微信 transport's own small state, in <data dir>/wecom.sqlite3 (one writer: the
event loop): kf sync cursors, the kf reply windows, welcome codes, who follows whom, tag
ids, customer-group members, channel QR codes (渠道活码) and staff-confirm tasks.

Kept apart from pond's database because it is the transport's business (the kernel knows
nothing of WeCom); every write commits at once, so a restart resumes from the last cursor
and never reuses a welcome code."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

# Key prefixes, one per kind of record.
CURSOR = "cursor:"  # open_kfid -> sync_msg cursor
KF = "kf:"  # external_userid -> {open_kfid, last_in, sent}
KF_NAME = "kfname:"  # external_userid -> the customer's WeChat nickname
WELCOME = "welcome:"  # external_userid -> {code, at, used}
FOLLOW = "follow:"  # external_userid -> staff userid who owns the relationship
TAG_ID = "tag:"  # tag name -> WeCom tag id
ROOM = "room:"  # chat_id -> {name, members: {id: name}}
WAY = "way:"  # channel code -> {config_id, qr_code, file, at}
TASK = "task:"  # staff-confirm task id -> {kind, job, at, done}


class WecomStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )

    def get(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, ensure_ascii=False)),
        )

    def delete(self, key: str) -> None:
        self._db.execute("DELETE FROM kv WHERE key = ?", (key,))

    def items(self, prefix: str) -> list[tuple[str, Any]]:
        rows = self._db.execute(
            "SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, prefix + "\uffff"),
        ).fetchall()
        return [(key[len(prefix) :], json.loads(value)) for key, value in rows]

    def close(self) -> None:
        self._db.close()
