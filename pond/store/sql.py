"""Data that grows with the audience: SQLAlchemy Core over SQLite (WAL) or any SQLAlchemy URL.

Only portable Core constructs are used; the one dialect-specific piece is the set of SQLite
pragmas applied to each new SQLite connection. ``DATABASE_URL=postgresql://...`` runs the
same code.

Timestamps are timezone-aware ``datetime`` objects in the API. They are stored as UTC
(``DateTime(timezone=True)``; SQLite keeps them as naive UTC text, which sorts correctly) and
always come back as aware UTC datetimes. Naive datetimes are refused with ValueError, so a
local clock can never be mixed up with UTC silently.

Durability:

- ``mark_seen`` commits before it returns.
- Group commit: ``record_event``, the ``kv_*`` writes and the writes other modules hand to
  ``defer()`` (the inbox and outbox journals) sit in memory until ``flush()`` writes them
  all in ONE transaction. ``run_flusher`` flushes a few ms after the first pending write
  (``group_window``); ``events()``, ``close()`` and the outbox (before every send) flush
  too, so no action leaves before the batch that decided it is committed. While a burst
  keeps the loop busy, the next handler to start commits overdue receipts
  (``flush_if_overdue``). Reads through
  ``kv_get``/``kv_items`` see pending writes. What is pending at a kill -9 is lost: the
  inbox journal makes that safe (an event whose "handled" mark is lost is handled again,
  and its actions are deduplicated by (event, ordinal)).
- A batch that fails for its data (an unencodable string, a duplicate key) is split: each
  write is tried on its own and only the bad one is dropped (logged), so one bad row never
  blocks the others. A batch that fails for the disk (full, I/O error, locked) stays
  pending and is retried whole.
- SQLite runs with ``synchronous=NORMAL`` in WAL mode: a commit survives a crash or kill of
  the process; a power loss or OS crash may roll back the last few commits (never corrupt).

Threading: one writer. A ``SqlStore`` is used from the asyncio loop thread only (the
flusher task runs there too); it is not safe to share between threads or processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from .docs import validate_namespace
from .errors import StoreCorrupt, StoreError
from .fast import Prepared, Reader

__all__ = ["SqlStore", "UTCDateTime", "clean_text", "clean_value", "is_transient"]

log = logging.getLogger("pond.store")

MAX_KEY_LENGTH = 255
_ID_LENGTH = 255
_NAME_LENGTH = 64
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def _json_dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def clean_text(value: str) -> str:
    """A string every backend can store: lone surrogates (from a broken transport or a
    bad id) become visible escapes instead of failing the whole batch at commit."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def clean_value(value: object, path: str, kinds: dict[str, str]) -> object:
    """A JSON-safe copy of `value`; what had to change is noted in `kinds` (path -> kind)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            kinds[path] = "float"
            return str(value)
        return value
    if isinstance(value, str):
        cleaned = clean_text(value)
        if cleaned is not value and cleaned != value:
            kinds[path] = "str"
        return cleaned
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for k, v in value.items():
            key = clean_text(k) if isinstance(k, str) else str(k)
            out[key] = clean_value(v, f"{path}.{key}" if path else key, kinds)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [clean_value(v, f"{path}[{i}]", kinds) for i, v in enumerate(value)]
    kinds[path] = type(value).__name__
    return clean_text(str(value))


def _flat_copy(data: Mapping[str, object]) -> dict[str, object] | None:
    """A copy of `data` when it is flat and every key and value is stored as it is (the
    usual event: ids, counts, flags); None when `clean_value` has to look."""
    for key, value in data.items():
        if type(key) is not str or not (key.isascii() or _encodable(key)):
            return None
        kind = type(value)
        if isinstance(value, str) and kind is str:
            if not (value.isascii() or _encodable(value)):
                return None
        elif kind is float:
            if value != value or value in (float("inf"), float("-inf")):
                return None
        elif not (kind is int or kind is bool or value is None):
            return None
    return dict(data)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_transient(error: BaseException) -> bool:
    """True for trouble of the disk or the database (full, I/O error, locked): retry the
    same writes later. False for trouble of the data itself (encoding, duplicate key)."""
    if isinstance(error, OSError):
        return True
    if isinstance(error, OperationalError):
        return True
    if isinstance(error, sqlite3.OperationalError):
        return True
    orig = getattr(error, "orig", None)
    return isinstance(orig, OSError | sqlite3.OperationalError)


@dataclass(slots=True)
class _Op:
    """A deferred write: run inside the next group transaction; `done` after its commit.
    A row for a prepared statement (`defer_row`) runs with its neighbours of the same
    statement as one executemany."""

    label: str
    run: Callable[[sa.Connection], None]
    done: Callable[[], None] | None = None
    prepared: Prepared | None = None
    row: Mapping[str, Any] | None = None


_DELETED = object()
_MISSING = object()
_KV_CACHE_MAX = 100_000
_AUTOCHECKPOINT = 1000  # SQLite's default, in pages
_AUTOCHECKPOINT_SAFETY = 8000  # while the background checkpoints run (~32 MB of WAL)


@dataclass(frozen=True, slots=True)
class _Json:
    """A cached key/value that is a list or a dict: kept as text, so a caller that
    changes what it read cannot change the cache."""

    text: str


def _short(error: BaseException) -> str:
    return (
        f"{type(error).__name__}: "
        + str(getattr(error, "orig", None) or error).splitlines()[0][:200]
    )


def _require_aware(ts: datetime, what: str = "ts") -> datetime:
    if not isinstance(ts, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(ts).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {ts.isoformat()})")
    return ts


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _require_aware(value).astimezone(UTC)
        if dialect.name in ("sqlite", "mysql", "mariadb"):
            return value.replace(tzinfo=None)  # no time zone support: store naive UTC
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_error_code(exc: BaseException) -> int | None:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, sqlite3.DatabaseError):
        code = getattr(orig, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF
        text = str(orig)
        if "file is not a database" in text:
            return _SQLITE_NOTADB
        if "malformed" in text:
            return _SQLITE_CORRUPT
    return None


class SqlStore:
    """Events (write-behind), seen message ids and a namespaced key/value table.

    Other modules may add their own ``Table``s to ``metadata`` and call ``create_all()``
    again (it only creates what is missing).
    """

    def __init__(
        self,
        url: str | URL,
        *,
        flush_interval: float = 0.5,
        batch_size: int = 500,
        max_buffered: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        self.url = make_url(url)
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        # Beyond this many unflushed events (only while the database keeps failing) the
        # oldest are dropped and counted in ``dropped_events``, so memory stays bounded.
        self.max_buffered = max_buffered if max_buffered is not None else 100 * batch_size
        self.dropped_events = 0
        self.dropped_writes = 0  # deferred writes refused by the database for their data
        self.commits = 0  # group transactions committed (benchmarks, tests)
        self.group_window = 0.002  # seconds the committer waits to gather a batch
        self._buffer: list[dict[str, Any]] = []
        self._ops: list[_Op] = []
        self._kv_pending: dict[tuple[str, str], object] = {}
        self._kick: asyncio.Event | None = None
        self._urgent = False  # an urgent write waits for the next group commit
        self._urgent_at = 0.0  # monotonic time of the oldest urgent write pending
        # Called with the error when a flush fails for the disk (the App alerts, once).
        self.on_trouble: Callable[[BaseException | None], None] = lambda error: None
        self._next_auto_flush = batch_size
        self._closed = False

        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.sqlite_path: Path | None = None
        database = self.url.database or ""
        if self.is_sqlite and database not in ("", ":memory:") and not database.startswith("file:"):
            self.sqlite_path = Path(database)

        try:
            self.engine: sa.Engine = sa.create_engine(self.url, json_serializer=_json_dumps)
        except TypeError:  # a dialect without JSON serializer hooks
            self.engine = sa.create_engine(self.url)

        if self.is_sqlite:

            @sa.event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
                cursor = dbapi_connection.cursor()
                try:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute("PRAGMA synchronous=NORMAL")
                    cursor.execute("PRAGMA busy_timeout=5000")
                    cursor.execute("PRAGMA foreign_keys=ON")
                finally:
                    cursor.close()

        self.metadata = sa.MetaData()
        self.events_table = sa.Table(
            "events",
            self.metadata,
            sa.Column(
                "id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # INTEGER PK = rowid
                primary_key=True,
                autoincrement=True,
            ),
            sa.Column("ts", UTCDateTime(), nullable=False),
            sa.Column("kind", sa.String(_NAME_LENGTH), nullable=False),
            sa.Column("plugin", sa.String(_NAME_LENGTH), nullable=False),
            sa.Column("chat_id", sa.String(_ID_LENGTH), nullable=False),
            sa.Column("contact_id", sa.String(_ID_LENGTH), nullable=False),
            sa.Column("room_id", sa.String(_ID_LENGTH), nullable=False),
            sa.Column("data", sa.JSON(), nullable=False),
            sa.Index("ix_events_kind_ts", "kind", "ts"),
            sa.Index("ix_events_contact_id_ts", "contact_id", "ts"),
        )
        self.seen_messages_table = sa.Table(
            "seen_messages",
            self.metadata,
            sa.Column("msg_id", sa.String(_ID_LENGTH), primary_key=True),
            sa.Column("ts", UTCDateTime(), nullable=False),
            sa.Index("ix_seen_messages_ts", "ts"),
        )
        self.kv_table = sa.Table(
            "kv",
            self.metadata,
            sa.Column("namespace", sa.String(_NAME_LENGTH), primary_key=True),
            sa.Column("key", sa.String(MAX_KEY_LENGTH), primary_key=True),
            sa.Column("value", sa.JSON(), nullable=True),
        )
        # Statements on the per-message path are built once: building a WHERE clause costs
        # more than running it on SQLite.
        kv, seen = self.kv_table.c, self.seen_messages_table.c
        where_key = (kv.namespace == sa.bindparam("ns"), kv.key == sa.bindparam("k"))
        self._q_kv_get = sa.select(kv.value).where(*where_key)
        self._q_seen_insert = sa.insert(self.seen_messages_table).values(
            msg_id=sa.bindparam("msg_id"), ts=sa.bindparam("ts", type_=seen.ts.type)
        )
        self.reader = Reader.of(self.engine)
        self._p_kv_get = self.prepare(self._q_kv_get)
        self._p_kv_update = self.prepare(
            sa.update(self.kv_table).where(*where_key).values(value=sa.bindparam("value"))
        )
        self._p_kv_insert = self.prepare(sa.insert(self.kv_table), ["namespace", "key", "value"])
        self._p_kv_delete = self.prepare(sa.delete(self.kv_table).where(*where_key))
        self._p_events = self.prepare(
            sa.insert(self.events_table),
            ["ts", "kind", "plugin", "chat_id", "contact_id", "room_id", "data"],
        )
        # Key/values as committed, (namespace, key) -> value or _Json: the per-message
        # reads (a greeter's "seen today") need no query. Only values this process read
        # or wrote, never absence. One writer per data dir (the instance lock; the command
        # line only creates mailbox keys) keeps it true; code that changes the kv table
        # behind the store's back calls forget_cached().
        self._kv_cache: dict[tuple[str, str], object] = {}
        self._writer: sa.Connection | None = None
        # WAL checkpoints: copying ~1000 pages back into the database file and syncing it
        # took 8-12 ms inside whichever commit crossed SQLite's threshold (the p99 of a
        # group commit; ~0.5 ms otherwise). While the committer runs, a worker thread
        # checkpoints every `checkpoint_every` group commits on a connection of its own
        # (SQLite lets a checkpoint run beside the writer), and the group commit's own
        # threshold is raised to a safety net.
        self.checkpoint_every = 16
        self._checkpointed = 0
        self._checkpointing: asyncio.Future[None] | None = None
        self._checkpoint_lock = threading.Lock()
        self._autocheckpoint = _AUTOCHECKPOINT

    def prepare(self, statement: Any, keys: list[str] | None = None) -> Prepared:
        """A statement for the per-message path (see pond/store/fast.py)."""
        return Prepared(self.engine, statement, keys)

    # -- schema --------------------------------------------------------------------------

    def create_all(self) -> None:
        """Create missing tables; for SQLite, first check that the file is a database.

        A file that is not an SQLite database (or is damaged) raises ``StoreCorrupt``
        naming it; the file is left untouched.
        """
        try:
            with self.engine.connect() as conn:
                if self.is_sqlite:
                    conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
            self.metadata.create_all(self.engine)
        except (SQLAlchemyError, sqlite3.DatabaseError) as exc:
            if self.sqlite_path is not None and _sqlite_error_code(exc) in (
                _SQLITE_CORRUPT,
                _SQLITE_NOTADB,
            ):
                orig = exc.orig if isinstance(exc, DBAPIError) else exc
                raise StoreCorrupt(
                    self.sqlite_path,
                    f"数据库文件 {self.sqlite_path} 不是可用的 SQLite 数据库（{orig}），"
                    "文件没有被改动。请用 python3 scripts/backup.py restore 恢复备份，"
                    "或把它移走（从空数据库开始），然后再启动。",
                ) from exc
            raise

    # -- events (write-behind) -----------------------------------------------------------

    def record_event(
        self,
        kind: str,
        *,
        ts: datetime,
        plugin: str = "",
        chat_id: str = "",
        contact_id: str = "",
        room_id: str = "",
        data: Mapping[str, object] | None = None,
    ) -> None:
        """Buffer one event; it reaches the database at the next flush.

        ``data`` is copied now, so later changes by the caller do not leak in. What cannot
        be stored (a lone surrogate, a datetime, NaN) is stored as text and its original
        kind listed under ``data["_sanitised"]`` (field path -> kind): the event log never
        refuses an event and never fails a batch for it.
        """
        self._check_open()
        _check_text("kind", kind, _NAME_LENGTH, allow_empty=False)
        _check_text("plugin", plugin, _NAME_LENGTH)
        _check_text("chat_id", chat_id, _ID_LENGTH)
        _check_text("contact_id", contact_id, _ID_LENGTH)
        _check_text("room_id", room_id, _ID_LENGTH)
        _require_aware(ts)
        kinds: dict[str, str] = {}
        flat = _flat_copy(data) if data else {}
        snapshot = flat if flat is not None else clean_value(dict(data or {}), "", kinds)
        assert isinstance(snapshot, dict)
        ids = {"chat_id": chat_id, "contact_id": contact_id, "room_id": room_id}
        for name, value in ids.items():
            cleaned = clean_text(value)
            if cleaned != value:
                kinds[name] = "str"
                ids[name] = cleaned[:_ID_LENGTH]
        if kinds:
            snapshot["_sanitised"] = kinds
        self._buffer.append({"ts": ts, "kind": kind, "plugin": plugin, **ids, "data": snapshot})
        if len(self._buffer) >= self._next_auto_flush:
            self._auto_flush()

    def _auto_flush(self) -> None:
        try:
            self.flush()
        except (SQLAlchemyError, OSError):
            # The caller is handling a message: do not fail it for analytics. Keep the
            # rows, retry after another batch, and bound the memory.
            log.exception("flushing %d buffered events failed; will retry", len(self._buffer))
            overflow = len(self._buffer) - self.max_buffered
            if overflow > 0:
                del self._buffer[:overflow]
                self.dropped_events += overflow
                log.error("dropped the %d oldest unflushed events", overflow)
            self._next_auto_flush = len(self._buffer) + self.batch_size
        else:
            self._next_auto_flush = self.batch_size

    @property
    def buffered(self) -> int:
        """Number of events recorded but not yet flushed."""
        return len(self._buffer)

    # -- group commit -------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Writes are waiting for the next group commit."""
        return bool(self._buffer or self._ops or self._kv_pending)

    def defer(
        self,
        label: str,
        run: Callable[[sa.Connection], None],
        done: Callable[[], None] | None = None,
        *,
        urgent: bool = False,
    ) -> None:
        """Run `run(conn)` inside the next group transaction; call `done()` once committed.
        `urgent` writes (an inbound event received) are committed within `group_window`;
        the others ride along with the next commit, at the latest `flush_interval` later."""
        self._check_open()
        self._ops.append(_Op(label, run, done))
        self._deferred(urgent)

    def defer_row(
        self,
        label: str,
        prepared: Prepared,
        row: Mapping[str, Any],
        done: Callable[[], None] | None = None,
        *,
        urgent: bool = False,
    ) -> None:
        """`defer` for one row of a prepared statement. Rows of the same statement that
        follow each other in the batch go in one executemany. `row` is read at commit
        time, so the caller may still change it (an inbox row becomes "handled")."""
        self._check_open()
        self._ops.append(
            _Op(label, lambda conn: _run_one(prepared, conn, row), done, prepared, row)
        )
        self._deferred(urgent)

    def _deferred(self, urgent: bool) -> None:
        if urgent:
            if not self._urgent:
                self._urgent_at = time.monotonic()
            self._urgent = True
            self._nudge()

    def flush_if_overdue(self) -> None:
        """Commit now if an urgent write has waited longer than `group_window`. The
        committer's timer cannot fire while the loop is busy (a burst of events being
        handled one after another), so the handlers call this between events: a burst's
        receipts are committed within about one window plus one handler, not after all of
        them. Disk trouble leaves everything pending for the committer to retry."""
        if not self._urgent or time.monotonic() - self._urgent_at < self.group_window:
            return
        try:
            self.flush()
        except (SQLAlchemyError, OSError) as error:
            log.debug("early group commit failed (%s); the committer retries", _short(error))

    @property
    def committer_running(self) -> bool:
        return self._kick is not None

    def _nudge(self) -> None:
        if self._kick is not None:
            self._kick.set()

    def _kv_written(self) -> None:
        """With a committer running, a key/value write waits for the group commit. Without
        one (scripts, tools, tests driving the App by hand) it is a commit point itself, so
        another process reading the same data sees it at once."""
        if self._kick is not None:
            return  # rides along with the next group commit
        try:
            self.flush()
        except (SQLAlchemyError, OSError) as error:  # disk trouble: stays pending
            log.error("cannot commit a key/value write now (%s); it stays pending", _short(error))

    def flush(self, extra: Callable[[sa.Connection], Any] | None = None) -> Any:
        """Commit everything pending (events, key/values, deferred writes) in one
        transaction; with `extra`, run it last in the same transaction and return its
        result (the outbox's cap reservation and "sending" mark ride along this way).

        Disk trouble: everything stays pending and the error is raised. Data trouble: the
        batch is split and only the writes the database refuses are dropped (logged)."""
        if not self.dirty and extra is None:
            return None
        events, self._buffer = self._buffer, []
        ops, self._ops = self._ops, []
        kvs, self._kv_pending = self._kv_pending, {}
        try:
            with self._group_transaction() as conn:
                self._write_all(conn, events, ops, kvs)
                result = extra(conn) if extra is not None else None
        except BaseException as error:
            if not isinstance(error, Exception) or is_transient(error) or extra is not None:
                self._restore(events, ops, kvs)
                if isinstance(error, Exception) and is_transient(error):
                    self.on_trouble(error)
                raise
            log.error("a group commit failed (%s); writing one by one", _short(error))
            self._split(events, ops, kvs)
            result = None
        else:
            self.commits += 1
            self._cache_kvs(kvs)
            self._committed(ops)
        self._urgent = False
        self.on_trouble(None)
        return result

    @contextlib.contextmanager
    def _group_transaction(self) -> Iterator[sa.Connection]:
        """The group commit's transaction, on one connection kept for the store's life (a
        pool checkout and the rollback that resets a returned connection cost about as
        much as the writes of a small batch)."""
        conn = self._writer
        if conn is None or conn.closed or conn.invalidated:
            conn = self._writer = self.engine.connect()
            self._apply_autocheckpoint()
        with conn.begin():
            yield conn

    def _apply_autocheckpoint(self) -> None:
        conn = self._writer
        if self.is_sqlite and conn is not None and not conn.closed:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute(f"PRAGMA wal_autocheckpoint={int(self._autocheckpoint)}")

    def _checkpoint_if_due(self) -> None:
        if self.sqlite_path is None or self.commits - self._checkpointed < self.checkpoint_every:
            return
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        self._checkpointed = self.commits
        self._checkpointing = asyncio.ensure_future(asyncio.to_thread(self._checkpoint))

    def _checkpoint(self) -> None:
        """In a worker thread, on a connection of its own: a PASSIVE checkpoint never
        waits for the writer and never blocks it."""
        with self._checkpoint_lock:
            if self._closed or self.sqlite_path is None:
                return
            try:
                conn = sqlite3.connect(str(self.sqlite_path), timeout=0.0)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                finally:
                    conn.close()
            except sqlite3.Error as error:  # the next one, or SQLite's own, will do
                log.debug("background checkpoint failed (%s)", error)

    def _write_all(
        self,
        conn: sa.Connection,
        events: list[dict[str, Any]],
        ops: list[_Op],
        kvs: dict[tuple[str, str], object],
    ) -> None:
        for (namespace, key), value in kvs.items():
            self._kv_write(conn, namespace, key, value)
        n = 0
        while n < len(ops):
            op = ops[n]
            if op.prepared is None or op.row is None:
                op.run(conn)
                n += 1
                continue
            rows = [op.row]
            n += 1
            while n < len(ops) and ops[n].prepared is op.prepared and ops[n].row is not None:
                rows.append(ops[n].row)  # type: ignore[arg-type]
                n += 1
            op.prepared.execute(conn, rows)
        self._p_events.execute(conn, events)

    def _restore(
        self,
        events: list[dict[str, Any]],
        ops: list[_Op],
        kvs: dict[tuple[str, str], object],
    ) -> None:
        self._buffer[:0] = events
        self._ops[:0] = ops
        self._kv_pending = {**kvs, **self._kv_pending}

    def _split(
        self,
        events: list[dict[str, Any]],
        ops: list[_Op],
        kvs: dict[tuple[str, str], object],
    ) -> None:
        units: list[tuple[str, Callable[[sa.Connection], None], _Op | None]] = []
        for namespace, key in kvs:
            self._kv_cache.pop((namespace, key), None)  # whether it exists: ask the table
        for (namespace, key), value in kvs.items():
            units.append((f"kv {namespace}", self._kv_unit(namespace, key, value), None))
        units += [(op.label, op.run, op) for op in ops]
        for row in events:
            units.append((f"event {row['kind']}", self._event_unit(row), None))
        for n, (label, run, op) in enumerate(units):
            try:
                with self.engine.begin() as conn:
                    run(conn)
            except Exception as error:
                if is_transient(error):  # the disk went away meanwhile: keep the rest
                    self._restore_units(units[n:])
                    raise
                self.dropped_writes += 1
                log.error("dropped one write the database refuses: %s (%s)", label, _short(error))
                continue
            self.commits += 1
            if op is not None and op.done is not None:
                op.done()

    def _kv_unit(self, namespace: str, key: str, value: object) -> Callable[[sa.Connection], None]:
        def run(conn: sa.Connection) -> None:
            self._kv_write(conn, namespace, key, value)
            self._cache_kvs({(namespace, key): value})  # only after its own commit

        return run

    def _event_unit(self, row: dict[str, Any]) -> Callable[[sa.Connection], None]:
        return lambda conn: _run_one(self._p_events, conn, row)

    def _restore_units(
        self, units: list[tuple[str, Callable[[sa.Connection], None], _Op | None]]
    ) -> None:
        # Left-over units go back as deferred writes (events and kv lose their batching).
        self._ops[:0] = [op or _Op(label, run) for label, run, op in units]

    @staticmethod
    def _committed(ops: list[_Op]) -> None:
        for op in ops:
            if op.done is not None:
                try:
                    op.done()
                except Exception:  # a callback must not undo a commit
                    log.exception("after-commit callback of %s failed", op.label)

    async def run_flusher(self) -> None:
        """The committer: a few ms after the first pending write, commit the batch; at
        least every ``flush_interval`` seconds. It survives any error (logged; disk trouble
        is retried) and flushes once more when cancelled."""
        self._kick = asyncio.Event()
        if self.dirty:
            self._kick.set()
        self._autocheckpoint = _AUTOCHECKPOINT_SAFETY
        self._apply_autocheckpoint()
        try:
            while True:
                try:
                    self._checkpoint_if_due()
                    kicked = False
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.flush_interval):
                            await self._kick.wait()
                            kicked = True
                    self._kick.clear()
                    if kicked:
                        await asyncio.sleep(self.group_window)
                        if not self._urgent:
                            continue  # committed meanwhile (a send commits what is pending)
                    self.flush()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.error("group commit failed (%s); retrying", _short(error))
                    await asyncio.sleep(min(1.0, self.flush_interval))
        finally:
            self._kick = None
            if self._checkpointing is not None and not self._checkpointing.done():
                await asyncio.wait([self._checkpointing], timeout=10)
            self._autocheckpoint = _AUTOCHECKPOINT
            try:
                self._apply_autocheckpoint()
                self.flush()
            except Exception as error:
                log.error("final flush failed (%s)", _short(error))

    def events(
        self,
        *,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        chat_id: str | None = None,
        contact_id: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, object]]:
        """Events matching every given filter, oldest first; ``since`` <= ts < ``until``.

        Flushes first, so a caller always reads its own writes. Each row is a dict with
        ``id, ts, kind, plugin, chat_id, contact_id, room_id, data``.
        """
        self.flush()
        t = self.events_table
        query = sa.select(t)
        if kind is not None:
            query = query.where(t.c.kind == kind)
        if since is not None:
            query = query.where(t.c.ts >= _require_aware(since, "since"))
        if until is not None:
            query = query.where(t.c.ts < _require_aware(until, "until"))
        if chat_id is not None:
            query = query.where(t.c.chat_id == chat_id)
        if contact_id is not None:
            query = query.where(t.c.contact_id == contact_id)
        if newest_first:
            query = query.order_by(t.c.ts.desc(), t.c.id.desc())
        else:
            query = query.order_by(t.c.ts, t.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    # -- seen message ids ----------------------------------------------------------------

    def mark_seen(self, msg_id: str, ts: datetime) -> bool:
        """Record an inbound message id; True if it was new. Committed before returning."""
        self._check_open()
        _check_text("msg_id", msg_id, _ID_LENGTH, allow_empty=False)
        _require_aware(ts)
        try:
            with self.engine.begin() as conn:
                conn.execute(self._q_seen_insert, {"msg_id": msg_id, "ts": ts})
        except IntegrityError:
            return False
        return True

    def prune_seen(self, older_than: datetime) -> int:
        """Forget message ids seen before ``older_than``; returns how many."""
        t = self.seen_messages_table
        with self.engine.begin() as conn:
            result = conn.execute(sa.delete(t).where(t.c.ts < _require_aware(older_than)))
            return int(result.rowcount)

    # -- key/value -----------------------------------------------------------------------

    def kv_get(self, namespace: str, key: str, default: object = None) -> object:
        key = _check_kv(namespace, key)
        pending = self._kv_pending.get((namespace, key), _MISSING)
        if pending is not _MISSING:
            return default if pending is _DELETED else pending
        cached = self._kv_cache.get((namespace, key), _MISSING)
        if cached is _MISSING:
            row = self.reader.first(self._p_kv_get, {"ns": namespace, "k": key})
            if row is None:
                # Absence is not remembered: the command line's mailbox (another process)
                # creates keys this process then polls for.
                return default
            value = row[0]
            if self.reader.raw and isinstance(value, str):
                value = json.loads(value)  # Core would have decoded the JSON column
            cached = _cacheable(value)
            self._cache_put((namespace, key), cached)
        return json.loads(cached.text) if isinstance(cached, _Json) else cached

    def _cache_put(self, key: tuple[str, str], value: object) -> None:
        if len(self._kv_cache) >= _KV_CACHE_MAX:
            self._kv_cache.clear()
        self._kv_cache[key] = value

    def _cache_kvs(self, kvs: dict[tuple[str, str], object]) -> None:
        for key, value in kvs.items():
            if value is _DELETED:
                self._kv_cache.pop(key, None)
            else:
                self._cache_put(key, _cacheable(value))

    def forget_cached(self) -> None:
        """Drop the key/value cache: for code that wrote the kv table directly (data-rights
        erasure). Reads go to the table again."""
        self._kv_cache.clear()

    def kv_set(self, namespace: str, key: str, value: object) -> None:
        """Store a JSON value; committed with the next group commit (reads see it now)."""
        self._check_open()
        key = _check_kv(namespace, key)
        # TypeError/ValueError now rather than from the driver; a copy, so later changes
        # by the caller do not leak in.
        kinds: dict[str, str] = {}
        self._kv_pending[(namespace, key)] = clean_value(json.loads(_json_dumps(value)), "", kinds)
        self._kv_written()

    def kv_delete(self, namespace: str, key: str) -> None:
        self._check_open()
        key = _check_kv(namespace, key)
        self._kv_pending[(namespace, key)] = _DELETED
        self._kv_written()

    def _kv_write(self, conn: sa.Connection, namespace: str, key: str, value: object) -> None:
        params = {"ns": namespace, "k": key, "value": value}
        if value is _DELETED:
            self._p_kv_delete.execute(conn, [params])
            return
        if self._p_kv_update.execute(conn, [params]):
            return
        self._p_kv_insert.execute(conn, [{"namespace": namespace, "key": key, "value": value}])

    def kv_items(self, namespace: str, prefix: str = "") -> list[tuple[str, object]]:
        """``(key, value)`` pairs of ``namespace`` whose key starts with ``prefix``, by key."""
        validate_namespace(namespace)
        prefix = clean_text(prefix)
        t = self.kv_table
        query = sa.select(t.c.key, t.c.value).where(t.c.namespace == namespace)
        if prefix:
            # LIKE narrows the scan; it is case-insensitive on SQLite, so filter exactly below.
            query = query.where(t.c.key.startswith(prefix, autoescape=True))
        query = query.order_by(t.c.key)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        found = {str(k): v for k, v in rows if str(k).startswith(prefix)}
        for (ns, key), value in self._kv_pending.items():
            if ns == namespace and key.startswith(prefix):
                if value is _DELETED:
                    found.pop(key, None)
                else:
                    found[key] = value
        return sorted(found.items())

    # -- lifecycle -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def close(self) -> None:
        """Flush the buffered events and release the connections. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._checkpoint_lock:  # a checkpoint in flight finishes first
                self._closed = True
            self.reader.close()
            if self._writer is not None:
                self._writer.close()
            self.engine.dispose()


def _run_one(prepared: Prepared, conn: sa.Connection, row: Mapping[str, Any]) -> None:
    prepared.execute(conn, [row])


def _cacheable(value: object) -> object:
    if isinstance(value, dict | list):
        return _Json(_json_dumps(value))
    return value


def _check_text(what: str, value: str, max_length: int, *, allow_empty: bool = True) -> None:
    """Refuse now what a strict backend (PostgreSQL) would refuse at flush time."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if (not value and not allow_empty) or len(value) > max_length:
        low = 0 if allow_empty else 1
        raise ValueError(f"{what} must have {low}-{max_length} characters, got {value!r}")


def _check_kv(namespace: str, key: str) -> str:
    """The key as stored: an unencodable key (an id with a lone surrogate) is escaped."""
    validate_namespace(namespace)
    _check_text("key", key, MAX_KEY_LENGTH, allow_empty=False)
    return clean_text(key)
