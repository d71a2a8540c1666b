"""Data that grows with the audience: SQLAlchemy Core over SQLite (WAL) or any SQLAlchemy URL.

Only portable Core constructs are used; the one dialect-specific piece is the set of SQLite
pragmas applied to each new SQLite connection. ``DATABASE_URL=postgresql://...`` runs the
same code.

Timestamps are timezone-aware ``datetime`` objects in the API. They are stored as UTC
(``DateTime(timezone=True)``; SQLite keeps them as naive UTC text, which sorts correctly) and
always come back as aware UTC datetimes. Naive datetimes are refused with ValueError, so a
local clock can never be mixed up with UTC silently.

Durability:

- ``mark_seen`` and the ``kv_*`` writes commit before they return.
- ``record_event`` is write-behind: events sit in memory until ``flush()`` (called by
  ``run_flusher`` every ``flush_interval`` seconds, when the buffer reaches ``batch_size``,
  by ``events()`` and by ``close()``). Events recorded after the last flush are lost if the
  process is killed. That is the price of not committing once per message.
- SQLite runs with ``synchronous=NORMAL`` in WAL mode: a commit survives a crash or kill of
  the process; a power loss or OS crash may roll back the last few commits (never corrupt).

Threading: one writer. A ``SqlStore`` is used from the asyncio loop thread only (the
flusher task runs there too); it is not safe to share between threads or processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from .docs import validate_namespace
from .errors import StoreCorrupt, StoreError

__all__ = ["SqlStore", "UTCDateTime"]

log = logging.getLogger("pond.store")

MAX_KEY_LENGTH = 255
_ID_LENGTH = 255
_NAME_LENGTH = 64
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def _json_dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


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
        self._buffer: list[dict[str, Any]] = []
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
        self._q_kv_update = sa.update(self.kv_table).where(*where_key)
        self._q_seen_insert = sa.insert(self.seen_messages_table).values(
            msg_id=sa.bindparam("msg_id"), ts=sa.bindparam("ts", type_=seen.ts.type)
        )

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

        ``data`` is copied (through JSON) now, so later changes by the caller do not leak
        in and a value JSON cannot hold fails here (TypeError/ValueError), not in the flush.
        """
        self._check_open()
        _check_text("kind", kind, _NAME_LENGTH, allow_empty=False)
        _check_text("plugin", plugin, _NAME_LENGTH)
        _check_text("chat_id", chat_id, _ID_LENGTH)
        _check_text("contact_id", contact_id, _ID_LENGTH)
        _check_text("room_id", room_id, _ID_LENGTH)
        _require_aware(ts)
        snapshot = json.loads(_json_dumps(dict(data))) if data else {}
        self._buffer.append(
            {
                "ts": ts,
                "kind": kind,
                "plugin": plugin,
                "chat_id": chat_id,
                "contact_id": contact_id,
                "room_id": room_id,
                "data": snapshot,
            }
        )
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

    def flush(self) -> None:
        """Write the buffered events in one transaction. On failure they stay buffered."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(self.events_table), batch)
        except BaseException:
            self._buffer[:0] = batch
            raise

    async def run_flusher(self) -> None:
        """Flush every ``flush_interval`` seconds until cancelled; flush once more then."""
        try:
            while True:
                await asyncio.sleep(self.flush_interval)
                try:
                    self.flush()
                except (SQLAlchemyError, OSError):
                    log.exception("periodic flush of %d events failed", len(self._buffer))
        finally:
            try:
                self.flush()
            except Exception:
                log.exception("final flush of %d events failed", len(self._buffer))

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
        _check_kv(namespace, key)
        with self.engine.connect() as conn:
            row = conn.execute(self._q_kv_get, {"ns": namespace, "k": key}).first()
        return default if row is None else row[0]

    def kv_set(self, namespace: str, key: str, value: object) -> None:
        """Store a JSON value; committed before returning."""
        self._check_open()
        _check_kv(namespace, key)
        _json_dumps(value)  # TypeError/ValueError now rather than from the driver
        params = {"ns": namespace, "k": key, "value": value}
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    result = conn.execute(self._q_kv_update, params)
                    if result.rowcount == 0:
                        conn.execute(
                            sa.insert(self.kv_table),
                            {"namespace": namespace, "key": key, "value": value},
                        )
                return
            except IntegrityError:
                # Another writer inserted the key between our UPDATE and INSERT: update.
                if attempt:
                    raise

    def kv_delete(self, namespace: str, key: str) -> None:
        self._check_open()
        _check_kv(namespace, key)
        t = self.kv_table
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.namespace == namespace, t.c.key == key))

    def kv_items(self, namespace: str, prefix: str = "") -> list[tuple[str, object]]:
        """``(key, value)`` pairs of ``namespace`` whose key starts with ``prefix``, by key."""
        validate_namespace(namespace)
        t = self.kv_table
        query = sa.select(t.c.key, t.c.value).where(t.c.namespace == namespace)
        if prefix:
            # LIKE narrows the scan; it is case-insensitive on SQLite, so filter exactly below.
            query = query.where(t.c.key.startswith(prefix, autoescape=True))
        query = query.order_by(t.c.key)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(str(k), v) for k, v in rows if str(k).startswith(prefix)]

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
            self._closed = True
            self.engine.dispose()


def _check_text(what: str, value: str, max_length: int, *, allow_empty: bool = True) -> None:
    """Refuse now what a strict backend (PostgreSQL) would refuse at flush time."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if (not value and not allow_empty) or len(value) > max_length:
        low = 0 if allow_empty else 1
        raise ValueError(f"{what} must have {low}-{max_length} characters, got {value!r}")


def _check_kv(namespace: str, key: str) -> None:
    validate_namespace(namespace)
    _check_text("key", key, MAX_KEY_LENGTH, allow_empty=False)
