"""Documents: TinyDB files written atomically.

Every write serializes the whole database to ``<name>.tmp-<pid>``, fsyncs it, keeps the
previous version as ``<name>.bak`` (a hard link, so the backup is always a whole file),
``os.replace``-s the temp file over the real one and fsyncs the directory. A kill at any
moment leaves either the old or the new version, never a torn file, and a write that has
returned survives a crash (and a power loss).

A file that does not parse is never reset: a copy is kept next to it and ``StoreCorrupt``
tells the operator where the copy and the last good version are.

TinyDB rewrites the whole file on every write, so keep these files small and use
``SqlStore`` for anything written per message.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

from .errors import StoreCorrupt, StoreError

__all__ = ["AtomicJSONStorage", "DocStore", "validate_namespace"]

_NAMESPACE_RE = re.compile(r"[a-z][a-z0-9_]{0,40}")

# (device, inode, size, mtime): identifies one version of a file without reading it.
_FileId = tuple[int, int, int, int]


def validate_namespace(name: str) -> str:
    """Return ``name`` if it is a valid namespace (``[a-z][a-z0-9_]{0,40}``), else ValueError."""
    if not isinstance(name, str) or _NAMESPACE_RE.fullmatch(name) is None:
        raise ValueError(
            f"invalid store namespace {name!r}: use 1-41 characters, a lowercase letter "
            "followed by lowercase letters, digits or underscores"
        )
    return name


def _file_id(path: Path) -> _FileId | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync elsewhere
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"JSON 格式错误，第 {exc.lineno} 行第 {exc.colno} 列"
    if isinstance(exc, UnicodeDecodeError):
        return f"第 {exc.start} 字节不是 UTF-8 编码"
    if isinstance(exc, RecursionError):
        return "JSON 嵌套层数太深"
    return str(exc)


class AtomicJSONStorage(Storage):
    """A TinyDB storage that survives kills: temp file + fsync + ``os.replace`` + ``.bak``.

    Use it without ``CachingMiddleware``: that middleware acknowledges writes it has not
    written yet. ``read()`` reads the file each time (the files are small), so there is no
    open handle to keep or to close.
    """

    def __init__(self, path: str | os.PathLike[str], *, indent: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.bak_path = self.path.with_name(self.path.name + ".bak")
        self._indent = indent
        # The version of the file last read or written by us (known to parse).
        self._known_good: _FileId | None = None
        self._remove_stale_temp_files()

    # -- reading -------------------------------------------------------------------------

    def read(self) -> dict[str, dict[str, Any]] | None:
        before = _file_id(self.path)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # unreadable (permissions, a directory...): not corrupt
            raise StoreError(
                f"数据文件 {self.path} 无法读取（{exc.strerror or exc}）。请检查它的权限和"
                "所有者（应属于运行机器人的用户），然后再启动。"
            ) from exc
        try:
            if not raw:
                if not self.bak_path.exists():
                    return None  # a new, empty database
                # This storage never writes an empty file: with an earlier version around,
                # an empty file means data was lost underneath us. Do not start afresh.
                raise ValueError("文件是空的，但存在更早的版本")
            data = json.loads(raw.decode("utf-8"))
            self._check_shape(data)
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; deeply nested JSON
        # exhausts the parser's recursion.
        except (ValueError, RecursionError) as exc:
            raise self._corrupt(exc) from exc
        if before is not None and before == _file_id(self.path):
            self._known_good = before
        return data  # type: ignore[no-any-return]

    @staticmethod
    def _check_shape(data: object) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"最外层应是 JSON 对象，却是 {type(data).__name__}")
        for table, docs in data.items():
            if not isinstance(docs, dict):
                raise ValueError(f"表 {table!r} 不是 JSON 对象")
            for doc_id, doc in docs.items():
                # TinyDB turns keys into int doc ids and documents into dicts: anything
                # else fails later, in the middle of serving a customer.
                if not doc_id.isdigit() or not isinstance(doc, dict):
                    raise ValueError(f"表 {table!r} 的文档 {doc_id!r} 格式不对")

    def _corrupt(self, exc: BaseException) -> StoreCorrupt:
        copy: Path | None = None
        try:
            copy = self._keep_copy()
            kept = f"已在 {copy} 留了一份副本"
        except OSError as err:
            kept = f"无法留副本（{err.strerror or err}）"
        if self.bak_path.exists():
            last_good = f"上一个完好的版本是 {self.bak_path}"
        else:
            last_good = "没有更早版本的 .bak"
        return StoreCorrupt(
            self.path,
            f"数据文件 {self.path} 已损坏（{_describe(exc)}）；{kept}；{last_good}。"
            "请修复或移走这个文件（或用 python3 scripts/backup.py restore 恢复备份）后再启动。",
        )

    def _keep_copy(self) -> Path:
        """Copy the bad file to ``<name>.corrupt-<UTC time>``, once per distinct content.

        A bot restarted in a loop by its supervisor must not fill the disk with copies of
        the same bad file, so an existing identical copy is reused.
        """
        content = self.path.read_bytes()
        pattern = glob.escape(f"{self.path.name}.corrupt-") + "*"
        for existing in sorted(self.path.parent.glob(pattern)):
            with contextlib.suppress(OSError):
                if existing.stat().st_size == len(content) and existing.read_bytes() == content:
                    return existing
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        base = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        candidate, n = base, 1
        while True:
            try:
                with candidate.open("xb") as dst:  # "x": never overwrite an earlier copy
                    dst.write(content)
                    dst.flush()
                    os.fsync(dst.fileno())
                return candidate
            except FileExistsError:
                n += 1
                candidate = base.with_name(f"{base.name}-{n}")

    # -- writing -------------------------------------------------------------------------

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        current = _file_id(self.path)
        if current is not None and current != self._known_good:
            # Someone else changed the file since we last saw it (or TinyDB writes without
            # reading first, as drop_tables() does): never back up or overwrite an
            # unreadable file. read() raises StoreCorrupt if it does not parse.
            self.read()
        text = json.dumps(data, ensure_ascii=False, indent=self._indent)
        directory = self.path.parent
        tmp = directory / f"{self.path.name}.tmp-{os.getpid()}"
        try:
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            self._backup_current()
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(directory)
        self._known_good = _file_id(self.path)

    def _backup_current(self) -> None:
        """Make ``<name>.bak`` the current (previous) version, atomically."""
        link = self.path.with_name(f"{self.bak_path.name}.tmp-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        try:
            os.link(self.path, link)
        except FileNotFoundError:
            return  # first write: there is no previous version
        except OSError:
            # File systems without hard links: a copy, fsynced, is just as whole.
            try:
                shutil.copyfile(self.path, link)
            except FileNotFoundError:
                return
            with link.open("rb") as fh:
                os.fsync(fh.fileno())
        os.replace(link, self.bak_path)

    def _remove_stale_temp_files(self) -> None:
        """Remove temp files left by writers that were killed mid-write."""
        for prefix in (f"{self.path.name}.tmp-", f"{self.bak_path.name}.tmp-"):
            pattern = str(self.path.parent / (glob.escape(prefix) + "*"))
            for name in glob.glob(pattern):
                suffix = name[len(str(self.path.parent / prefix)) :]
                if not suffix.isdigit():
                    continue
                pid = int(suffix)
                if pid != os.getpid() and not _pid_alive(pid):
                    with contextlib.suppress(OSError):
                        os.unlink(name)

    def close(self) -> None:
        """Nothing to close: every read and write opens and closes the file."""


class DocStore:
    """Small, mostly-read documents (rules, calendars, campaign definitions, today's counters).

    One TinyDB file per namespace under ``<data_dir>/docs/<namespace>.json``, written
    through :class:`AtomicJSONStorage`. ``db()`` reads the file once when it is first
    opened, so a corrupt file fails at start-up rather than at the first message.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.docs_dir = self.data_dir / "docs"
        self._dbs: dict[str, TinyDB] = {}

    def path_for(self, namespace: str) -> Path:
        return self.docs_dir / f"{validate_namespace(namespace)}.json"

    def db(self, namespace: str) -> TinyDB:
        """The TinyDB of ``namespace`` (cached). ValueError for an invalid name."""
        cached = self._dbs.get(namespace)
        if cached is not None:
            return cached
        path = self.path_for(namespace)
        self.docs_dir.mkdir(parents=True, exist_ok=True)
        db = TinyDB(path, storage=AtomicJSONStorage)
        try:
            db.storage.read()  # fail fast: StoreCorrupt now, not at the first message
        except BaseException:
            db.close()
            raise
        self._dbs[namespace] = db
        return db

    def close(self) -> None:
        dbs, self._dbs = list(self._dbs.values()), {}
        for db in dbs:
            db.close()
