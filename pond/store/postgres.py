"""Documents in PostgreSQL: the TinyDB API of ``Namespace.table()`` over a JSONB table.

With ``DATABASE_URL=postgresql://…`` several processes share one database, so documents
cannot stay in files of one data dir. ``SqlDocStore`` keeps TinyDB as the API (queries,
``doc_id``s, upserts work as before) and swaps its storage: one row per document in
``documents`` (namespace, table, doc id, JSONB body).

TinyDB reads the whole namespace before every operation and writes it back after a change;
``SqlDocStorage.write`` turns that into the few INSERT/UPDATE/DELETE statements that differ
from the rows in the database, in one transaction, committed before it returns (as the
atomic file storage fsyncs before it returns). The rows are locked while they are compared
(``FOR UPDATE``), so two processes writing one namespace do not lose each other's rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from tinydb import TinyDB
from tinydb.storages import Storage

from .docs import DocStore, validate_namespace
from .sql import SqlStore

__all__ = ["SqlDocStorage", "SqlDocStore", "define_documents", "import_doc_files"]

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def define_documents(metadata: sa.MetaData) -> sa.Table:
    """The documents table (PostgreSQL stores; SQLite keeps documents in files)."""
    if "documents" in metadata.tables:
        return metadata.tables["documents"]
    return sa.Table(
        "documents",
        metadata,
        sa.Column("namespace", sa.String(64), primary_key=True),
        sa.Column("tbl", sa.String(255), primary_key=True),
        sa.Column("doc_id", sa.String(32), primary_key=True),
        sa.Column("body", _JSON, nullable=False),
    )


Tables = dict[str, dict[str, Any]]


class SqlDocStorage(Storage):
    """A TinyDB storage holding one namespace in the documents table."""

    def __init__(self, namespace: str, *, engine: sa.Engine, table: sa.Table) -> None:
        super().__init__()
        self.namespace = validate_namespace(namespace)
        self._engine = engine
        self._t = table

    def _rows(self, conn: sa.Connection, *, lock: bool = False) -> Tables:
        t = self._t
        query = (
            sa.select(t.c.tbl, t.c.doc_id, t.c.body)
            .where(t.c.namespace == self.namespace)
            .order_by(t.c.tbl, t.c.doc_id)
        )
        if lock:
            query = query.with_for_update()
        tables: Tables = {}
        for tbl, doc_id, body in conn.execute(query):
            tables.setdefault(str(tbl), {})[str(doc_id)] = body
        # TinyDB gives out ids after the largest one: keep its order numeric.
        return {
            name: dict(sorted(docs.items(), key=lambda kv: _id_order(kv[0])))
            for name, docs in tables.items()
        }

    def read(self) -> Tables | None:
        with self._engine.connect() as conn:
            tables = self._rows(conn)
        return tables or None

    def write(self, data: Tables) -> None:
        # A JSON round trip: what TinyDB hands over may hold tuples or shared objects, the
        # database gives back plain JSON; compare like with like.
        wanted: Tables = json.loads(json.dumps(data, ensure_ascii=False, allow_nan=False))
        t = self._t
        with self._engine.begin() as conn:
            have = self._rows(conn, lock=True)
            for tbl, docs in have.items():
                gone = [d for d in docs if d not in wanted.get(tbl, {})]
                if gone:
                    conn.execute(
                        sa.delete(t).where(
                            t.c.namespace == self.namespace, t.c.tbl == tbl, t.c.doc_id.in_(gone)
                        )
                    )
            for tbl, docs in wanted.items():
                old = have.get(tbl, {})
                new = [
                    {"namespace": self.namespace, "tbl": tbl, "doc_id": d, "body": body}
                    for d, body in docs.items()
                    if d not in old
                ]
                if new:
                    conn.execute(sa.insert(t), new)
                for d, body in docs.items():
                    if d in old and old[d] != body:
                        conn.execute(
                            sa.update(t)
                            .where(t.c.namespace == self.namespace, t.c.tbl == tbl, t.c.doc_id == d)
                            .values(body=body)
                        )

    def close(self) -> None:
        """Nothing to close: every read and write takes a pooled connection."""


def _id_order(doc_id: str) -> tuple[int, str]:
    return (int(doc_id), "") if doc_id.isdigit() else (0, doc_id)


class SqlDocStore(DocStore):
    """``DocStore`` with the documents in the SQL database instead of files."""

    def __init__(self, data_dir: Path, sql: SqlStore) -> None:
        super().__init__(data_dir)
        self._sql = sql
        self.table = define_documents(sql.metadata)

    def db(self, namespace: str) -> TinyDB:
        cached = self._dbs.get(namespace)
        if cached is not None:
            return cached
        db = TinyDB(
            validate_namespace(namespace),
            storage=SqlDocStorage,
            engine=self._sql.engine,
            table=self.table,
        )
        self._dbs[namespace] = db
        return db


def import_doc_files(data_dir: Path, engine: sa.Engine) -> list[str]:
    """Copy the TinyDB files of ``<data_dir>/docs`` into the documents table: a PostgreSQL
    store of the release before kept its documents in files. A namespace that already has
    rows is left alone (imported before, or written since), so running it again is
    harmless; the files stay where they are. Returns the namespaces imported."""
    from .docs import AtomicJSONStorage

    table = define_documents(sa.MetaData())
    done: list[str] = []
    for path in sorted((Path(data_dir) / "docs").glob("*.json")):
        try:
            namespace = validate_namespace(path.stem)
        except ValueError:
            continue
        with engine.connect() as conn:
            has = conn.execute(
                sa.select(table.c.doc_id).where(table.c.namespace == namespace).limit(1)
            ).first()
        data = AtomicJSONStorage(path).read()  # StoreCorrupt for a damaged file
        if has is not None or not data:
            continue
        SqlDocStorage(namespace, engine=engine, table=table).write(data)
        done.append(namespace)
    return done
