"""Online backups of the data directory, and their restore.

A backup is a folder ``<root>/pond-YYYYMMDD-HHMMSS/`` holding ``pond.sqlite3`` (copied with
SQLite's online backup API: a consistent snapshot while the bot keeps writing), the
document files ``docs/*.json`` (each written atomically, so a copy is always a whole
version) and ``manifest.json``. It is built under a temporary name and renamed when
complete, so a half-made backup never looks like one. Each copy is checked with
``PRAGMA quick_check`` before it counts. The newest ``keep`` backups are kept.

A restore refuses while a bot holds the data directory (it takes the lock itself, so no
bot can start half-way), checks the backup, moves the current files aside (never deletes
them) and copies the backup in.

With ``DATABASE_URL`` pointing at PostgreSQL only the documents are copied: back that
database up with its own tools (pg_dump).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import StoreError
from .integrity import STATE_FILE, quick_check, record_state, remove_state, tables_with_rows
from .lock import InstanceLock, InstanceLocked

__all__ = [
    "BackupError",
    "BackupInfo",
    "InstanceLocked",
    "info_lines",
    "list_backups",
    "make_backup",
    "prune",
    "restore",
    "run_schedule",
]

log = logging.getLogger("pond.store")

PREFIX = "pond-"
MANIFEST = "manifest.json"
DB_NAME = "pond.sqlite3"


class BackupError(StoreError):
    """A backup cannot be made, found or restored (the message is for the operator)."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    name: str
    path: Path
    created_at: str  # local time, for people
    created_ts: float
    size: int  # bytes, all files
    tables: tuple[str, ...]  # tables that held rows


def _fsync_file(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy while another connection writes."""
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst, pages=4096)  # in steps, so the writer is never held up for long
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            dst.close()
    finally:
        src.close()


def _copy_docs(data_dir: Path, target: Path) -> list[str]:
    docs = data_dir / "docs"
    names: list[str] = []
    if not docs.is_dir():
        return names
    (target / "docs").mkdir()
    for path in sorted(docs.glob("*.json")):
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile: nothing to keep
            content = path.read_bytes()
            out = target / "docs" / path.name
            out.write_bytes(content)
            _fsync_file(out)
            names.append(path.name)
    return names


def make_backup(
    data_dir: Path, sqlite_path: Path | None, root: Path, now: datetime, keep: int
) -> Path:
    """Make one backup now (blocking: run it in a thread from the event loop) and prune
    to the newest `keep`. Returns its folder; BackupError if the copy is not sound."""
    data_dir, root = Path(data_dir), Path(root)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = PREFIX + now.strftime("%Y%m%d-%H%M%S")
    final = root / name
    n = 1
    while final.exists():
        n += 1
        final = root / f"{name}-{n}"
    work = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    try:
        tables: list[str] = []
        if sqlite_path is not None and sqlite_path.exists() and sqlite_path.stat().st_size:
            copy = work / DB_NAME
            _copy_sqlite(sqlite_path, copy)
            problems = quick_check(copy)
            if problems:
                raise BackupError(
                    f"备份失败：数据库 {sqlite_path} 的副本没有通过完整性检查（{problems[0]}）"
                )
            tables = tables_with_rows(copy)
            _fsync_file(copy)
        docs = _copy_docs(data_dir, work)
        size = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
        manifest = {
            "created_at": now.isoformat(timespec="seconds"),
            "created_ts": now.timestamp(),
            "source": str(data_dir),
            "database": DB_NAME if tables or (work / DB_NAME).exists() else None,
            "tables": tables,
            "docs": docs,
            "size": size,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2))
        _fsync_file(work / MANIFEST)
        os.replace(work, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    prune(root, keep)
    return final


def list_backups(root: Path) -> list[BackupInfo]:
    """Complete backups under `root`, newest first."""
    found = []
    for path in Path(root).glob(PREFIX + "*"):
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            found.append(
                BackupInfo(
                    name=path.name,
                    path=path,
                    created_at=str(manifest["created_at"]),
                    created_ts=float(manifest["created_ts"]),
                    size=int(manifest.get("size", 0)),
                    tables=tuple(manifest.get("tables", ())),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a complete backup of ours
    return sorted(found, key=lambda b: (b.created_ts, b.name), reverse=True)


def prune(root: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` backups (and temp folders of dead runs)."""
    removed = []
    for info in list_backups(root)[max(1, keep) :]:
        shutil.rmtree(info.path, ignore_errors=True)
        removed.append(info.path)
    for tmp in Path(root).glob(".tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _check_backup(info: BackupInfo) -> None:
    db = info.path / DB_NAME
    if db.exists():
        problems = quick_check(db)
        if problems:
            raise BackupError(
                f"备份 {info.name} 的数据库没有通过完整性检查（{problems[0]}），请换一个备份"
            )
    for doc in (info.path / "docs").glob("*.json"):
        try:
            json.loads(doc.read_bytes().decode("utf-8"))
        except (ValueError, RecursionError) as error:
            raise BackupError(
                f"备份 {info.name} 的文件 docs/{doc.name} 已损坏（{error}），请换一个备份"
            ) from None


def restore(data_dir: Path, root: Path, name: str, *, now: datetime | None = None) -> Path:
    """Replace the data files by backup `name`; returns the folder the replaced files were
    moved to. InstanceLocked while a bot runs; BackupError for an unknown or bad backup."""
    data_dir = Path(data_dir)
    backups = {b.name: b for b in list_backups(root)}
    info = backups.get(name)
    if info is None:
        known = "、".join(list(backups)[:5]) or "（没有备份）"
        raise BackupError(f"没有名为 {name} 的备份；现有的备份：{known}")
    with InstanceLock(data_dir):  # no bot may start while files are swapped
        _check_backup(info)
        stamp = (now or datetime.now().astimezone()).strftime("%Y%m%d-%H%M%S")
        aside = data_dir / f"before-restore-{stamp}"
        n = 1
        while aside.exists():
            n += 1
            aside = data_dir / f"before-restore-{stamp}-{n}"
        aside.mkdir(mode=0o700)
        for part in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "docs", STATE_FILE):
            with contextlib.suppress(FileNotFoundError):
                os.replace(data_dir / part, aside / part)
        if (info.path / DB_NAME).exists():
            tmp = data_dir / f"{DB_NAME}.restore-{os.getpid()}"
            shutil.copyfile(info.path / DB_NAME, tmp)
            _fsync_file(tmp)
            os.replace(tmp, data_dir / DB_NAME)
        if (info.path / "docs").is_dir():
            shutil.copytree(info.path / "docs", data_dir / "docs")
        _fsync_dir(data_dir)
        remove_state(data_dir)
        record_state(data_dir, data_dir / DB_NAME)
    return aside


async def run_schedule(
    data_dir: Path,
    sqlite_path: Path | None,
    root: Path,
    *,
    every_s: float,
    keep: int,
    now: Callable[[], datetime],
    on_error: Callable[[BaseException], None],
    check_s: float = 600.0,
) -> None:
    """Make a backup whenever the newest is `every_s` old (at once if there is none);
    until cancelled. Wall-clock time: a backup is about real days, not simulated ones."""
    while True:
        newest = list_backups(root)
        age = time.time() - newest[0].created_ts if newest else float("inf")
        if age >= every_s:
            try:
                path = await asyncio.to_thread(
                    make_backup, data_dir, sqlite_path, root, now(), keep
                )
                log.info("backup made: %s", path.name)
                with contextlib.suppress(OSError):
                    record_state(data_dir, sqlite_path)
            except Exception as error:  # a failed backup must never stop the bot
                on_error(error)
            age = 0.0
        await asyncio.sleep(max(1.0, min(check_s, every_s - age)))


def info_lines(infos: list[BackupInfo]) -> list[dict[str, Any]]:
    return [
        {"name": i.name, "created_at": i.created_at, "size": i.size, "tables": list(i.tables)}
        for i in infos
    ]
