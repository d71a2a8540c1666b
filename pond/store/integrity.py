"""Start-up checks of the data files, before anything opens (and so creates) them.

- ``PRAGMA quick_check`` on the SQLite file: a damaged page stops start-up instead of
  failing 退订 later, holding every reply (a damaged counter) or crashing the outbox.
- A marker outside the database, ``<data_dir>/pond.state.json``, records which tables held
  rows the last time the bot looked. A database that held data and is now missing, empty
  (0 bytes) or without any of those rows is refused: SQLite would otherwise start afresh
  and silently reset opt-outs, daily caps and the send journal.

Every refusal is a ``StoreCorrupt`` saying what happened, which file, and how to restore
(``python3 scripts/backup.py``); the files are never touched. To start afresh on purpose,
remove the database and the marker together (or the whole data directory)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import StoreCorrupt
from .lock import holder

__all__ = [
    "STATE_FILE",
    "check_sqlite_file",
    "quick_check",
    "read_state",
    "record_state",
    "tables_with_rows",
]

STATE_FILE = "pond.state.json"
RESTORE_HINT = (
    "机器人没有启动，也没有改动这个文件。恢复方法：python3 scripts/backup.py list 查看自动备份，"
    "python3 scripts/backup.py restore 备份名 恢复（见 README「数据备份与恢复」）"
)


def _hint(path: Path, marker: Path) -> str:
    """How to go back to a backup, and how to start afresh on purpose."""
    move = [p for p in (path, marker) if p.exists()]
    if not move:
        return RESTORE_HINT + "。"
    what = " 和 ".join(str(p) for p in move)
    return RESTORE_HINT + f"；确实要从空数据库重新开始，请把 {what} 一起移走后再启动。"


def _connect_ro(path: Path) -> sqlite3.Connection:
    # Read-only and without creating anything; a WAL file beside it is still read.
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)


def quick_check(path: Path, *, max_errors: int = 5) -> list[str]:
    """Problems PRAGMA quick_check finds in the SQLite file (empty list: fine).

    quick_check verifies every page and b-tree of the file, without the cross-checks of
    indexes against tables that make integrity_check slow on a large file."""
    try:
        conn = _connect_ro(path)
        try:
            rows = conn.execute(f"PRAGMA quick_check({int(max_errors)})").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        return [str(error)]
    problems = [str(row[0]) for row in rows]
    return [] if problems == ["ok"] else problems


def tables_with_rows(path: Path) -> list[str]:
    """Names of the tables of the file that hold at least one row (one indexed probe each)."""
    conn = _connect_ro(path)
    try:
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        quoted = {name: '"' + name.replace('"', '""') + '"' for name in names}
        return sorted(
            name
            for name in names
            if conn.execute(f"SELECT EXISTS (SELECT 1 FROM {quoted[name]})").fetchone()[0]
        )
    finally:
        conn.close()


def read_state(data_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(data_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def record_state(data_dir: Path, sqlite_path: Path | None) -> dict[str, Any]:
    """Remember what the database holds (tables with rows, size), outside the database.
    A database that has held rows stays "known to hold data" even after they are deleted
    (the marker is only ever widened), until a restore or an operator resets the marker."""
    state = read_state(data_dir)
    if sqlite_path is None or not sqlite_path.exists():
        return state
    try:
        tables = tables_with_rows(sqlite_path)
    except sqlite3.Error:
        return state
    known = sorted(set(state.get("tables", [])) | set(tables))
    state = {
        "file": sqlite_path.name,
        "tables": known,
        "size": sqlite_path.stat().st_size,
        "recorded_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    _write_json(Path(data_dir) / STATE_FILE, state)
    return state


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _earlier_run(data_dir: Path) -> bool:
    """Traces of an earlier run in a directory without a marker (made before markers
    existed): document files or the heartbeat of a bot."""
    if (data_dir / "heartbeat.json").exists():
        return True
    docs = data_dir / "docs"
    return any(p.stat().st_size > 2 for p in docs.glob("*.json")) if docs.is_dir() else False


def _refuse(path: Path, what: str, marker: Path, state: dict[str, Any]) -> StoreCorrupt:
    when = state.get("recorded_at")
    had = "、".join(state.get("tables", [])) or "数据"
    earlier = f"上次记录（{when}）时它还有数据（{had}）。" if when else "这个目录以前运行过机器人。"
    return StoreCorrupt(path, f"数据库文件 {path} {what}。{earlier}" + _hint(path, marker))


def check_sqlite_file(data_dir: Path, path: Path) -> float:
    """Refuse a missing, emptied or damaged database that held data; returns the seconds
    quick_check took (for the log). Touches nothing."""
    data_dir = Path(data_dir)
    marker = data_dir / STATE_FILE
    state = read_state(data_dir)
    known = bool(state.get("tables"))
    if not path.exists():
        if known:
            raise _refuse(path, "不见了", marker, state)
        return 0.0
    if path.stat().st_size == 0:
        # SQLite leaves a 0-byte file only for an instant; beside the traces of earlier
        # runs (a data dir older than the marker) it is data lost, not a new database.
        if known or (not marker.exists() and _earlier_run(data_dir)):
            raise _refuse(path, "变成了空文件（0 字节）", marker, state)
        return 0.0
    started = time.monotonic()
    # A running bot checked this file when it started: a command-line tool opening the
    # same data meanwhile does not read the whole file again (seconds per GB).
    owner = holder(data_dir)
    problems = quick_check(path) if owner is None or owner == os.getpid() else []
    took = time.monotonic() - started
    if problems:
        detail = "；".join(problems[:3])
        raise StoreCorrupt(
            path,
            f"数据库文件 {path} 已损坏（完整性检查 quick_check 发现：{detail}）。"
            + _hint(path, marker),
        )
    wanted: Iterable[str] = state.get("tables", [])
    if wanted:
        try:
            present = set(tables_with_rows(path))
        except sqlite3.Error as error:
            hint = _hint(path, marker)
            raise StoreCorrupt(path, f"数据库文件 {path} 无法读取（{error}）。{hint}") from error
        if not present & set(wanted):
            raise _refuse(path, "里面的数据不见了（之前有数据的表现在都是空的）", marker, state)
    return took


def remove_state(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (Path(data_dir) / STATE_FILE).unlink()
