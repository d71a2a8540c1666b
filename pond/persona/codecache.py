"""Compiled persona code kept on disk between starts (start-up time).

Parsing and compiling ~200 template variants to Python code objects is most of a start.
The result only depends on the variant's text, its key and file name, the brand globals,
the sandbox's code generator (this package's sources), Jinja2 and Python; all of them are
in each entry's digest, so an edit of any of them simply misses. Only variants that compiled
cleanly and passed the variable check are stored. The trial render is never skipped: a
cached variant is still rendered with its sample values at every load.

The file is one marshal blob in the data directory (written atomically, like a .pyc); a file
that cannot be read is ignored and rewritten. Safe to use from the reload worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import marshal
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import CodeType
from typing import Any

import jinja2
from jinja2.bccache import Bucket

log = logging.getLogger("pond.persona")

_FORMAT = 1
_MAX_ENTRIES = 5000  # in memory, across many reloads; beyond it the oldest go


def _code_salt() -> bytes:
    """Everything outside the template that decides the generated code."""
    digest = hashlib.sha256()
    digest.update(importlib.util.MAGIC_NUMBER)
    digest.update(f"{_FORMAT}|{jinja2.__version__}|{sys.version}".encode())
    here = Path(__file__).resolve().parent
    for source in sorted(here.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.digest()


_SALT: bytes | None = None


def _salt() -> bytes:
    global _SALT
    if _SALT is None:
        _SALT = _code_salt()
    return _SALT


class CodeCache:
    """Digest of (variant, brand, code) -> (code object, undeclared variable names)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[CodeType, tuple[str, ...]]] = {}
        self._used: set[str] = set()  # what this process loaded or compiled: what is kept
        self._loaded = False
        self._changed = False
        self.hits = 0
        self.misses = 0

    @staticmethod
    def digest(brand: Mapping[str, Any], key: str, code_name: str, source: str) -> str:
        h = hashlib.sha256(_salt())
        for part in (repr(sorted(brand.items(), key=lambda kv: kv[0])), key, code_name, source):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()

    def _load(self) -> None:
        self._loaded = True
        try:
            blob = self.path.read_bytes()
        except OSError:
            return
        try:
            data = marshal.loads(blob)
            if not isinstance(data, dict) or data.get("salt") != _salt():
                return  # another pond or Python wrote it: start afresh
            entries = data["entries"]
            for digest, (code, names) in entries.items():
                if isinstance(code, CodeType) and isinstance(names, tuple):
                    self._entries[digest] = (code, names)
        except (ValueError, EOFError, TypeError, KeyError):
            log.info("persona code cache %s unreadable: rebuilt", self.path.name)
            self._entries.clear()

    def get(self, digest: str) -> tuple[CodeType, frozenset[str]] | None:
        with self._lock:
            if not self._loaded:
                self._load()
            found = self._entries.get(digest)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._used.add(digest)
            return found[0], frozenset(found[1])

    def put(self, digest: str, code: CodeType, undeclared: set[str]) -> None:
        with self._lock:
            self._entries[digest] = (code, tuple(sorted(undeclared)))
            self._used.add(digest)
            while len(self._entries) > _MAX_ENTRIES:
                self._entries.pop(next(iter(self._entries)))
            self._changed = True

    def save(self) -> None:
        """Write the file if anything new was compiled; a failure only costs the next start."""
        with self._lock:
            if not self._changed:
                return
            # Versions of files edited away are dropped: the file stays one persona's size.
            kept = {d: e for d, e in self._entries.items() if d in self._used}
            blob = marshal.dumps({"salt": _salt(), "entries": kept})
            self._changed = False
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(blob)
            os.replace(tmp, self.path)
        except OSError as error:
            log.info("persona code cache not written (%s)", error.strerror or error)
            with contextlib.suppress(OSError):
                tmp.unlink()


class SharedFilesCache(jinja2.BytecodeCache):
    """Jinja2's own hook for the shared files (_voice.j2 and the macros it imports), which
    the loader compiles: the same store and digest as the variants."""

    def __init__(self, cache: CodeCache, brand: Mapping[str, Any]) -> None:
        self.cache = cache
        self.brand = brand

    def _digest(self, bucket: Bucket) -> str:
        return self.cache.digest(self.brand, "shared", bucket.key, bucket.checksum)

    def load_bytecode(self, bucket: Bucket) -> None:
        found = self.cache.get(self._digest(bucket))
        if found is not None:
            bucket.code = found[0]

    def dump_bytecode(self, bucket: Bucket) -> None:
        if bucket.code is not None:
            self.cache.put(self._digest(bucket), bucket.code, set())
