"""The per-message path of the SQL store (pond/store/fast.py): prepared statements on the
DBAPI cursor store exactly what Core stores, a full disk is the same error and keeps the
batch, and the key/value cache never serves anything the table does not hold."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pond.store import SqlStore

T0 = datetime(2026, 11, 23, 11, 30, tzinfo=UTC)


@pytest.fixture
def sql(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore(f"sqlite:///{tmp_path / 't.sqlite3'}")
    store.create_all()
    yield store
    store.close()


def rows(sql: SqlStore, query: str) -> list[tuple[Any, ...]]:
    with sql.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(query).all()]


def test_a_prepared_insert_stores_what_core_stores(sql: SqlStore) -> None:
    row = {
        "ts": T0,
        "kind": "in.message",
        "plugin": "",
        "chat_id": "c1",
        "contact_id": "c1",
        "room_id": "",
        "data": {"text": "你好", "n": 2},
    }
    prepared = sql.prepare(sa.insert(sql.events_table), list(row))
    assert prepared.raw  # SQLite, nobody listening to statement events: the DBAPI cursor
    with sql.engine.begin() as conn:
        prepared.execute(conn, [row])
        conn.execute(sa.insert(sql.events_table), row)
    fast, core = rows(sql, "SELECT ts, kind, chat_id, data FROM events ORDER BY id")
    assert fast == core
    assert [e["data"] for e in sql.events()] == [{"text": "你好", "n": 2}] * 2
    assert [e["ts"] for e in sql.events()] == [T0, T0]


def test_a_full_disk_on_the_fast_path_keeps_the_batch(tmp_path: Path) -> None:
    sql = SqlStore(f"sqlite:///{tmp_path / 'full.sqlite3'}")
    connections: list[Any] = []
    sa.event.listen(sql.engine, "connect", lambda dbapi, record: connections.append(dbapi))
    sql.create_all()
    sql.flush(lambda conn: None)  # the group commit's connection exists now

    def limit(pages: int) -> None:
        for conn in connections:
            conn.execute(f"PRAGMA max_page_count={pages}")

    pages = rows(sql, "PRAGMA page_count")[0][0]
    limit(pages)  # the file may not grow: SQLite answers "database or disk is full"
    for n in range(200):
        sql.record_event("in.message", ts=T0, chat_id=f"c{n}", data={"pad": "x" * 400})
    sql.kv_set("greeter", "c1", {"seen": 1})
    with pytest.raises(sa.exc.OperationalError, match="full"):
        sql.flush()
    assert sql.dirty and sql.buffered == 200 and sql.dropped_writes == 0
    limit(100_000)  # space back: the same batch commits
    sql.flush()
    assert not sql.dirty
    assert rows(sql, "SELECT count(*) FROM events") == [(200,)]
    assert sql.kv_get("greeter", "c1") == {"seen": 1}
    sql.close()


def test_statement_listeners_see_every_statement(sql: SqlStore) -> None:
    seen: list[str] = []
    sa.event.listen(
        sql.engine, "before_cursor_execute", lambda conn, cur, stmt, *a: seen.append(stmt)
    )
    sql.kv_set("ns", "k", 1)
    sql.flush()
    assert any(s.startswith("INSERT INTO kv") for s in seen)


def test_a_value_read_and_changed_by_the_caller_is_not_changed_in_the_store(
    sql: SqlStore,
) -> None:
    sql.kv_set("ns", "tags", ["a"])
    sql.flush()
    value = sql.kv_get("ns", "tags")
    assert isinstance(value, list)
    value.append("b")  # a plugin changing what it read, without writing it back
    assert sql.kv_get("ns", "tags") == ["a"]


def test_the_cache_follows_every_write_of_the_store(sql: SqlStore) -> None:
    assert sql.kv_get("ns", "k") is None
    sql.kv_set("ns", "k", 1)
    sql.flush()
    assert rows(sql, "SELECT value FROM kv WHERE key = 'k'") == [(1,)]  # numeric affinity
    sql.kv_set("ns", "k", 2)
    sql.flush()
    sql.kv_delete("ns", "k")
    sql.flush()
    assert sql.kv_get("ns", "k", "gone") == "gone"
    assert rows(sql, "SELECT count(*) FROM kv") == [(0,)]


def test_a_key_another_process_creates_is_seen(tmp_path: Path) -> None:
    # The command line hands a request to the running bot and polls for the answer key.
    url = f"sqlite:///{tmp_path / 'two.sqlite3'}"
    cli, bot = SqlStore(url), SqlStore(url)
    cli.create_all()
    assert cli.kv_get("health", "cli:res:1") is None
    bot.kv_set("health", "cli:res:1", {"outputs": []})
    bot.flush()
    assert cli.kv_get("health", "cli:res:1") == {"outputs": []}
    bot.kv_delete("health", "cli:res:1")
    bot.flush()
    assert bot.kv_get("health", "cli:res:1") is None
    cli.close()
    bot.close()


def test_a_write_behind_the_stores_back_is_seen_after_forget_cached(sql: SqlStore) -> None:
    sql.kv_set("ns", "k", "before")
    sql.flush()
    assert sql.kv_get("ns", "k") == "before"
    with sql.engine.begin() as conn:  # as the data-rights erasure does
        conn.exec_driver_sql("UPDATE kv SET value = '\"after\"' WHERE key = 'k'")
    sql.forget_cached()
    assert sql.kv_get("ns", "k") == "after"


def test_a_refused_key_value_is_not_remembered(sql: SqlStore) -> None:
    # A duplicate key, as a second writer would cause: the batch is split and the cache
    # asks the table again.
    assert sql.kv_get("ns", "k") is None
    with sql.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO kv (namespace, key, value) VALUES ('ns', 'k', '0')")
    sql.kv_set("ns", "k", 1)
    sql.flush()
    assert sql.kv_get("ns", "k") == 1
    assert rows(sql, "SELECT value FROM kv WHERE key = 'k'") == [(1,)]  # numeric affinity


def test_driver_errors_are_sqlalchemy_errors(sql: SqlStore) -> None:
    prepared = sql.prepare(sa.insert(sql.kv_table), ["namespace", "key", "value"])
    row = {"namespace": "ns", "key": "k", "value": 1}
    with sql.engine.begin() as conn:
        prepared.execute(conn, [row])
    with pytest.raises(sa.exc.IntegrityError) as caught, sql.engine.begin() as conn:
        prepared.execute(conn, [row])
    assert isinstance(caught.value.orig, sqlite3.IntegrityError)
