"""The App's store (one DocStore + one SqlStore) and the per-plugin slice of it."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from sqlalchemy.engine import URL
from tinydb.table import Table

from .docs import DocStore, validate_namespace
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
        self.docs = DocStore(self.data_dir)
        self.sql = SqlStore(url)
        try:
            self.sql.create_all()
        except BaseException:
            self.close()
            raise

    def namespace(self, name: str) -> Namespace:
        """The slice of the store that belongs to plugin ``name``."""
        return Namespace(validate_namespace(name), self)

    def close(self) -> None:
        """Flush buffered events, release connections and files."""
        try:
            self.sql.close()
        finally:
            self.docs.close()

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

    Documents live in ``<data_dir>/docs/<name>.json`` (TinyDB, small and mostly read);
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

    def set(self, key: str, value: object) -> None:
        self._store.sql.kv_set(self.name, key, value)

    def delete(self, key: str) -> None:
        self._store.sql.kv_delete(self.name, key)

    def items(self, prefix: str = "") -> list[tuple[str, object]]:
        return self._store.sql.kv_items(self.name, prefix)

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"
