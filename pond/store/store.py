"""The App's store (one DocStore + one SqlStore) and the per-plugin slice of it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType

from sqlalchemy.engine import URL
from tinydb.table import Table

from . import migrate
from .docs import DocStore, validate_namespace
from .integrity import check_sqlite_file, record_state
from .postgres import SqlDocStore
from .sql import SqlStore

__all__ = ["Namespace", "Store"]


class Store:
    """What the App owns: one DocStore and one SqlStore under a data dir.

    ``database_url`` defaults to ``sqlite:///<data_dir>/pond.sqlite3``. The constructor
    creates ``data_dir``, creates missing tables and checks the database, so a corrupt
    SQLite file raises ``StoreCorrupt`` here. Modules that add tables to ``sql.metadata``
    call ``sql.create_all()`` again afterwards.

    One writer: use it from the asyncio loop thread only, and from one process per data dir.
    """

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        url: str | URL
        if database_url is None:
            url = URL.create("sqlite", database=str(self.data_dir / "pond.sqlite3"))
        else:
            url = database_url
        sql = SqlStore(url)
        if sql.sqlite_path is not None:
            # Before create_all: SQLite would turn a missing or emptied file into a new,
            # empty database and reset opt-outs, caps and the send journal.
            try:
                check_sqlite_file(self.data_dir, sql.sqlite_path)
            except BaseException:
                sql.engine.dispose()
                raise
        # PostgreSQL serves several processes: documents go to its JSONB table, not files.
        self.docs = DocStore(self.data_dir) if sql.is_sqlite else SqlDocStore(self.data_dir, sql)
        self.sql = sql
        try:
            # Behind or ahead of the code: refused, naming the command (pond/store/migrate.py).
            with migrate.start_lock(sql.engine):
                empty = migrate.check(sql.engine)
                self.sql.create_all()
                if empty:
                    migrate.stamp(sql.engine)
        except BaseException:
            self.close()
            raise
        self.remember_contents()

    def remember_contents(self) -> None:
        """Record outside the database which tables hold data (see store.integrity)."""
        if self.sql.sqlite_path is not None:
            with contextlib.suppress(OSError):
                record_state(self.data_dir, self.sql.sqlite_path)

    def namespace(self, name: str) -> Namespace:
        """The slice of the store that belongs to plugin ``name``."""
        return Namespace(validate_namespace(name), self)

    def close(self) -> None:
        """Flush buffered events, release connections and files."""
        try:
            self.sql.close()
        finally:
            self.docs.close()
            if not getattr(self, "_closed", False):
                self._closed = True
                self.remember_contents()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Namespace:
    """What a plugin sees as ``ctx.store``: its own documents and keys, nobody else's.

    Documents live in ``<data_dir>/docs/<name>.json`` (TinyDB, small and mostly read), or
    in the ``documents`` table with a PostgreSQL store (the same TinyDB API);
    key/values live in the SQL ``kv`` table under this namespace (JSON values, committed
    before ``set``/``delete`` return).
    """

    def __init__(self, name: str, store: Store) -> None:
        self.name = validate_namespace(name)
        self._store = store

    def table(self, name: str = "_default") -> Table:
        return self._store.docs.db(self.name).table(name)

    def get(self, key: str, default: object = None) -> object:
        return self._store.sql.kv_get(self.name, key, default)

    def get_int(self, key: str, default: int = 0) -> int:
        """A number kept with set(); anything else there (a hand-edited value) reads as
        `default` rather than failing the handler that asked."""
        value = self.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    def get_float(self, key: str, default: float = 0.0) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return default
        return float(value)

    def get_str(self, key: str, default: str = "") -> str:
        value = self.get(key, default)
        return value if isinstance(value, str) else default

    def incr(self, key: str, by: int = 1) -> int:
        """Add `by` to a counter (0 when unset) and return the new value."""
        value = self.get_int(key) + by
        self.set(key, value)
        return value

    def set(self, key: str, value: object) -> None:
        self._store.sql.kv_set(self.name, key, value)

    def delete(self, key: str) -> None:
        self._store.sql.kv_delete(self.name, key)

    def items(self, prefix: str = "") -> list[tuple[str, object]]:
        return self._store.sql.kv_items(self.name, prefix)

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"
