"""Prepared statements for the per-message path.

A SQLAlchemy Core statement costs ~45-60 us of Python per execution on top of the ~5 us
SQLite itself needs (compile-cache lookup, parameter processing, result set-up), and a
connection checkout for a read ~50 us more. A message takes about ten of them, so that
overhead was most of the durable pipeline's cost. `Prepared` compiles a Core statement once
for the engine's dialect and, on SQLite, runs it on the DBAPI cursor of the caller's Core
connection (the same transaction), with the same bind processors Core would apply (JSON,
UTC datetimes). The statement stays the single source: on any other backend (PostgreSQL)
it runs through Core unchanged, and so it does on SQLite while someone listens to
SQLAlchemy's statement events (tests that simulate a full disk, statement counters), so
such instrumentation keeps seeing every statement.

Driver errors are raised as the SQLAlchemy exceptions Core would raise (OperationalError
for a full disk, IntegrityError for a duplicate key): callers handle one family."""

from __future__ import annotations

import contextlib
import sqlite3
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

__all__ = ["Prepared", "Reader"]

Row = Mapping[str, Any]


class Prepared:
    def __init__(
        self,
        engine: sa.Engine,
        statement: sa.Executable,
        keys: Sequence[str] | None = None,
    ) -> None:
        """`keys`: for an INSERT, the columns every row gives (all of them, always)."""
        self.engine = engine
        self.statement = statement
        self.raw = engine.dialect.name == "sqlite"
        dialect = engine.dialect
        compiled = cast(
            SQLCompiler,
            cast(ClauseElement, statement).compile(
                dialect=dialect, column_keys=list(keys) if keys else None
            ),
        )
        self.sql = compiled.string
        names = list(compiled.positiontup or [])
        self._names = names
        # Literals inside the statement (the 1 of `n + 1`) are bind parameters too.
        self._fixed = {
            name: compiled.binds[name].effective_value
            for name in names
            if not compiled.binds[name].required
        }
        processors: list[Callable[[Any], Any] | None] = [
            compiled.binds[name].type._cached_bind_processor(dialect) for name in names
        ]
        self._plain = all(p is None for p in processors) and not self._fixed
        self._processed = [(n, p) for n, p in zip(names, processors, strict=True)]

    def _params(self, row: Row) -> tuple[Any, ...]:
        if self._plain:
            return tuple([row[name] for name in self._names])
        if self._fixed:
            fixed = self._fixed
            row = {n: row[n] if n in row or n not in fixed else fixed[n] for n in self._names}
        return tuple([row[n] if p is None else p(row[n]) for n, p in self._processed])

    def _use_raw(self) -> bool:
        # Listeners to statement events must keep seeing every statement.
        return self.raw and not self.engine.dispatch.before_cursor_execute

    def execute(self, conn: sa.Connection, rows: Sequence[Row]) -> int:
        """Run for every row in `rows` inside `conn`'s transaction; returns the rowcount
        (the sum over all rows)."""
        if not rows:
            return 0
        if not self._use_raw():
            result = conn.execute(self.statement, list(rows) if len(rows) > 1 else rows[0])
            return int(result.rowcount)
        cursor = _sqlite(conn).cursor()
        try:
            if len(rows) == 1:
                cursor.execute(self.sql, self._params(rows[0]))
            else:
                cursor.executemany(self.sql, [self._params(r) for r in rows])
            return int(cursor.rowcount)
        except sqlite3.Error as error:
            raise _wrap(self.sql, error) from error
        finally:
            cursor.close()

    def first(self, conn: sa.Connection, row: Row) -> tuple[Any, ...] | None:
        """The first result row of a SELECT run inside `conn`'s transaction."""
        if not self._use_raw():
            found = conn.execute(self.statement, dict(row)).first()
            return None if found is None else tuple(found)
        cursor = _sqlite(conn).cursor()
        try:
            cursor.execute(self.sql, self._params(row))
            result = cursor.fetchone()
        except sqlite3.Error as error:
            raise _wrap(self.sql, error) from error
        finally:
            cursor.close()
        return None if result is None else tuple(result)


class Reader:
    """Point reads of the hot path (is this message id known? which channel?) on one
    connection kept open for the store's life (`Reader.of(engine)`: one per engine,
    closed with the SqlStore): no checkout per read. Reads never see writes still
    pending in the group commit; callers overlay those themselves."""

    _readers: ClassVar[weakref.WeakKeyDictionary[sa.Engine, Reader]] = weakref.WeakKeyDictionary()

    def __init__(self, engine: sa.Engine) -> None:
        # Weak: the registry's values must not keep their keys (the engines) alive.
        self._engine = weakref.ref(engine)
        self.raw = engine.dialect.name == "sqlite"
        self._conn: Any = None

    @property
    def engine(self) -> sa.Engine:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the engine of this reader is gone")
        return engine

    @classmethod
    def of(cls, engine: sa.Engine) -> Reader:
        reader = cls._readers.get(engine)
        if reader is None:
            reader = cls._readers[engine] = cls(engine)
        return reader

    def first(self, prepared: Prepared, params: Row) -> tuple[Any, ...] | None:
        rows = self._fetch(prepared, params, one=True)
        return rows[0] if rows else None

    def all(self, prepared: Prepared, params: Row) -> list[tuple[Any, ...]]:
        return self._fetch(prepared, params, one=False)

    def _fetch(self, prepared: Prepared, params: Row, *, one: bool) -> list[tuple[Any, ...]]:
        if not self.raw:
            with self.engine.connect() as conn:
                result = conn.execute(prepared.statement, dict(params))
                found = [result.first()] if one else list(result)
            return [tuple(r) for r in found if r is not None]
        if self._conn is None:
            self._conn = self.engine.raw_connection()
        try:
            cursor = self._conn.driver_connection.execute(prepared.sql, prepared._params(params))
            rows = [cursor.fetchone()] if one else cursor.fetchall()
            cursor.close()
        except sqlite3.Error as error:
            self.close()  # a fresh connection next time
            raise _wrap(prepared.sql, error) from error
        return [tuple(r) for r in rows if r is not None]

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


def _wrap(sql: str, error: sqlite3.Error) -> sa.exc.StatementError:
    return sa.exc.DBAPIError.instance(sql, None, error, sqlite3.Error)


def _sqlite(conn: sa.Connection) -> sqlite3.Connection:
    """The DBAPI connection under a SQLite engine's connection (raw mode is SQLite only)."""
    return cast(sqlite3.Connection, conn.connection.driver_connection)
