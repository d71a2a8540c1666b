"""pond.store: atomic documents, write-behind events, seen ids, namespaced key/values."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from pond.store import (
    AtomicJSONStorage,
    DocStore,
    Namespace,
    SqlStore,
    Store,
    StoreCorrupt,
    StoreError,
)

T0 = datetime(2026, 11, 23, 11, 30, tzinfo=UTC)
CST = timezone(timedelta(hours=8))


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def sql(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore(_url(tmp_path / "t.sqlite3"))
    store.create_all()
    yield store
    store.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "data") as s:
        yield s


def _count_rows(sql: SqlStore, table: str = "events") -> int:
    """Count rows with a separate connection, bypassing the store's buffer."""
    with sql.engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


# -- documents -------------------------------------------------------------------------


def test_doc_round_trip_survives_reopen(tmp_path: Path) -> None:
    docs = DocStore(tmp_path)
    docs.db("greeter").insert({"text": "欢迎光临", "n": 1})
    docs.db("greeter").table("rules").insert({"kw": "价格"})
    docs.close()

    path = tmp_path / "docs" / "greeter.json"
    assert "欢迎光临" in path.read_text(encoding="utf-8")  # ensure_ascii=False, UTF-8
    again = DocStore(tmp_path)
    assert again.db("greeter").all() == [{"text": "欢迎光临", "n": 1}]
    assert again.db("greeter").table("rules").all() == [{"kw": "价格"}]
    again.close()


def test_db_is_cached_per_namespace(tmp_path: Path) -> None:
    docs = DocStore(tmp_path)
    assert docs.db("a") is docs.db("a")
    assert docs.db("a") is not docs.db("b")
    docs.close()


def test_bak_holds_previous_version_and_no_temp_files_remain(tmp_path: Path) -> None:
    docs = DocStore(tmp_path)
    db = docs.db("greeter")
    db.insert({"v": 1})
    assert not (tmp_path / "docs" / "greeter.json.bak").exists()  # nothing before the 1st
    db.insert({"v": 2})
    db.insert({"v": 3})

    bak = json.loads((tmp_path / "docs" / "greeter.json.bak").read_text(encoding="utf-8"))
    cur = json.loads((tmp_path / "docs" / "greeter.json").read_text(encoding="utf-8"))
    assert sorted(d["v"] for d in bak["_default"].values()) == [1, 2]
    assert sorted(d["v"] for d in cur["_default"].values()) == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == [
        "greeter.json",
        "greeter.json.bak",
    ]
    docs.close()


def test_missing_or_empty_file_is_an_empty_db(tmp_path: Path) -> None:
    docs = DocStore(tmp_path)
    assert docs.db("fresh").all() == []
    (tmp_path / "docs" / "empty.json").write_bytes(b"")
    assert docs.db("empty").all() == []
    docs.db("empty").insert({"ok": True})
    assert docs.db("empty").all() == [{"ok": True}]
    docs.close()


def test_corrupt_file_raises_keeps_a_copy_and_is_not_reset(tmp_path: Path) -> None:
    docs = DocStore(tmp_path)
    docs.db("greeter").insert({"v": 1})
    docs.db("greeter").insert({"v": 2})  # now there is a .bak
    docs.close()
    path = tmp_path / "docs" / "greeter.json"
    bad = b'{"_default": {"1": {"v": 1}, '
    path.write_bytes(bad)

    docs = DocStore(tmp_path)
    with pytest.raises(StoreCorrupt) as info:
        docs.db("greeter")
    err = info.value
    copies = sorted((tmp_path / "docs").glob("greeter.json.corrupt-*"))
    assert len(copies) == 1
    assert copies[0].read_bytes() == bad
    assert err.path == path
    message = str(err)
    assert f"数据文件 {path} 已损坏（JSON 格式错误，第 1 行第 " in message
    assert f"已在 {copies[0]} 留了一份副本" in message
    assert f"上一个完好的版本是 {path}.bak" in message
    assert message.endswith("后再启动。")
    assert isinstance(err, StoreError)

    # Asking again neither resets the file nor piles up copies of the same bad version.
    with pytest.raises(StoreCorrupt):
        docs.db("greeter")
    assert path.read_bytes() == bad
    assert len(list((tmp_path / "docs").glob("greeter.json.corrupt-*"))) == 1
    # The .bak is the last good version and can be restored by hand.
    restored = json.loads((tmp_path / "docs" / "greeter.json.bak").read_text())
    assert restored == {"_default": {"1": {"v": 1}}}
    docs.close()


def test_empty_file_with_an_earlier_version_is_corrupt_not_new(tmp_path: Path) -> None:
    docs = DocStore(tmp_path)
    docs.db("greeter").insert({"v": 1})
    docs.db("greeter").insert({"v": 2})
    docs.close()
    (tmp_path / "docs" / "greeter.json").write_bytes(b"")  # lost underneath us
    with pytest.raises(StoreCorrupt, match="文件是空的，但存在更早的版本"):
        DocStore(tmp_path).db("greeter")
    # Removing the file, as the message says, starts afresh.
    (tmp_path / "docs" / "greeter.json").unlink()
    assert DocStore(tmp_path).db("greeter").all() == []


def test_file_corrupted_while_open_is_never_overwritten(tmp_path: Path) -> None:
    docs = DocStore(tmp_path)
    db = docs.db("greeter")
    db.insert({"v": 1})
    path = tmp_path / "docs" / "greeter.json"
    path.write_bytes(b"\x00\x00garbage")
    with pytest.raises(StoreCorrupt):
        db.insert({"v": 2})
    with pytest.raises(StoreCorrupt):
        db.drop_tables()  # writes without reading first: still refused
    assert path.read_bytes() == b"\x00\x00garbage"
    docs.close()


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"[1, 2]", "最外层应是 JSON 对象，却是 list"),
        (b'{"_default": 3}', "表 '_default' 不是 JSON 对象"),
        (b'{"a": "\xff"}', "第 7 字节不是 UTF-8 编码"),
        (b'{"_default": {"x": {}}}', "表 '_default' 的文档 'x' 格式不对"),
        (b'{"_default": {"1": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "JSON 嵌套层数太深"),
    ],
)
def test_wrong_shape_or_encoding_is_corrupt(tmp_path: Path, content: bytes, detail: str) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    storage = AtomicJSONStorage(path)
    with pytest.raises(StoreCorrupt, match="已损坏") as info:
        storage.read()
    assert detail in str(info.value)
    assert "没有更早版本的 .bak" in str(info.value)
    assert path.read_bytes() == content


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    docs_dir = tmp_path / "docs"
    docs_dir.mkdir()
    dead_pid = 2**22 + 12345  # above Linux's pid_max default range, never alive
    stale = [
        docs_dir / f"crash.json.tmp-{dead_pid}",
        docs_dir / f"crash.json.bak.tmp-{dead_pid}",
    ]
    for p in stale:
        p.write_text("{}")
    other = docs_dir / "crash.json.tmp-notapid"
    other.write_text("{}")
    docs = DocStore(tmp_path)
    docs.db("crash")
    assert not any(p.exists() for p in stale)
    assert other.exists()
    docs.close()


@pytest.mark.parametrize(
    "name", ["", "Greeter", "1abc", "_x", "a-b", "a.b", "../x", "abc\n", "a" * 42, "字"]
)
def test_invalid_namespace_is_refused(tmp_path: Path, name: str) -> None:
    docs = DocStore(tmp_path)
    with pytest.raises(ValueError, match="invalid store namespace"):
        docs.db(name)
    with Store(tmp_path / "s") as store:
        with pytest.raises(ValueError):
            store.namespace(name)
        with pytest.raises(ValueError):
            store.sql.kv_set(name, "k", 1)
    assert not (tmp_path / "docs").exists() or list((tmp_path / "docs").iterdir()) == []


@pytest.mark.parametrize("name", ["a", "a" * 41, "auto_reply", "x1_2"])
def test_valid_namespace(tmp_path: Path, name: str) -> None:
    docs = DocStore(tmp_path)
    docs.db(name).insert({"ok": 1})
    assert (tmp_path / "docs" / f"{name}.json").exists()
    docs.close()


# -- events (write-behind) -------------------------------------------------------------


def test_events_are_buffered_until_flush(sql: SqlStore) -> None:
    sql.record_event("message_in", ts=T0, chat_id="c1", contact_id="u1", data={"t": "价格"})
    assert sql.buffered == 1
    assert _count_rows(sql) == 0
    sql.flush()
    assert sql.buffered == 0
    assert _count_rows(sql) == 1


def test_events_reads_its_own_writes(sql: SqlStore) -> None:
    sql.record_event("message_in", ts=T0, plugin="auto_reply", chat_id="c1", contact_id="u1")
    assert _count_rows(sql) == 0
    rows = sql.events()
    assert _count_rows(sql) == 1
    assert rows == [
        {
            "id": 1,
            "ts": T0,
            "kind": "message_in",
            "plugin": "auto_reply",
            "chat_id": "c1",
            "contact_id": "u1",
            "room_id": "",
            "data": {},
        }
    ]


def test_events_filters_and_time_zones(sql: SqlStore) -> None:
    for minute in range(6):
        sql.record_event(
            "in" if minute % 2 == 0 else "out",
            ts=T0 + timedelta(minutes=minute),
            chat_id=f"c{minute % 3}",
            contact_id="u1" if minute < 3 else "u2",
            data={"m": minute},
        )
    # A +08:00 timestamp is the same instant; results always come back in UTC.
    sql.record_event("in", ts=(T0 + timedelta(minutes=10)).astimezone(CST), data={"m": 10})

    def minutes(rows: list[dict[str, object]]) -> list[object]:
        return [r["data"]["m"] for r in rows]  # type: ignore[index]

    assert minutes(sql.events()) == [0, 1, 2, 3, 4, 5, 10]
    assert minutes(sql.events(kind="in")) == [0, 2, 4, 10]
    assert minutes(sql.events(contact_id="u2")) == [3, 4, 5]
    assert minutes(sql.events(chat_id="c0")) == [0, 3]
    since = (T0 + timedelta(minutes=2)).astimezone(CST)
    assert minutes(sql.events(since=since, until=T0 + timedelta(minutes=4))) == [2, 3]
    assert minutes(sql.events(kind="in", limit=2)) == [0, 2]
    assert minutes(sql.events(limit=2, newest_first=True)) == [10, 5]
    last = sql.events()[-1]
    assert last["ts"] == T0 + timedelta(minutes=10)
    assert last["ts"].tzinfo is UTC  # type: ignore[attr-defined]


def test_batch_size_triggers_a_flush(tmp_path: Path) -> None:
    sql = SqlStore(_url(tmp_path / "t.sqlite3"), batch_size=3)
    sql.create_all()
    sql.record_event("e", ts=T0)
    sql.record_event("e", ts=T0)
    assert _count_rows(sql) == 0
    sql.record_event("e", ts=T0)
    assert _count_rows(sql) == 3
    assert sql.buffered == 0
    sql.close()


def test_record_event_refuses_bad_input_at_the_call(sql: SqlStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sql.record_event("e", ts=datetime(2026, 1, 1))  # naive: refused
    with pytest.raises(ValueError):
        sql.record_event("", ts=T0)
    assert sql.buffered == 0


def test_unstorable_values_are_sanitised_with_their_kind(sql: SqlStore) -> None:
    sql.record_event("e", ts=T0, data={"when": T0, "x": math.nan, "name": "a\udc80b"})
    sql.record_event("e", ts=T0, chat_id="u\ud800", data={"n": 2})
    first, second = (r["data"] for r in sql.events())
    assert first["_sanitised"] == {"when": "datetime", "x": "float", "name": "str"}
    assert first["name"] == "a\\udc80b"
    assert second["_sanitised"] == {"chat_id": "str"}


def test_one_bad_write_never_blocks_the_others(sql: SqlStore) -> None:
    """A batch refused for its data is split; only the bad write is dropped."""
    t = sql.kv_table

    def bad(conn: sa.Connection) -> None:
        conn.execute(sa.insert(t), {"namespace": "n", "key": "k\udc80", "value": 1})

    done: list[str] = []
    sql.defer("bad", bad, lambda: done.append("bad"))
    sql.record_event("e", ts=T0, data={"n": 1})
    sql.kv_set("ns", "good", 1)
    sql.flush()
    assert sql.dropped_writes == 1 and done == []
    assert [r["data"] for r in sql.events()] == [{"n": 1}]
    assert sql.kv_items("ns") == [("good", 1)]


def test_disk_trouble_keeps_the_whole_batch(sql: SqlStore) -> None:
    disk_full = [True]

    def full(conn: sa.Connection) -> None:
        if disk_full[0]:
            raise sa.exc.OperationalError(
                "INSERT", {}, sqlite3.OperationalError("database or disk is full")
            )

    sql.kv_set("ns", "k", 1)
    sql.defer("full", full)
    with pytest.raises(sa.exc.OperationalError):
        sql.flush()
    assert sql.kv_get("ns", "k") == 1 and sql.dirty
    disk_full[0] = False  # space back: the same batch commits
    sql.flush()
    assert not sql.dirty and sql.dropped_writes == 0


def test_text_longer_than_the_columns_is_refused_at_the_call(sql: SqlStore) -> None:
    # SQLite would store it; PostgreSQL would fail the whole batch at flush time.
    with pytest.raises(ValueError, match="kind"):
        sql.record_event("k" * 65, ts=T0)
    with pytest.raises(ValueError, match="contact_id"):
        sql.record_event("e", ts=T0, contact_id="u" * 256)
    with pytest.raises(TypeError, match="chat_id"):
        sql.record_event("e", ts=T0, chat_id=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="msg_id"):
        sql.mark_seen("m" * 256, T0)
    with pytest.raises(ValueError, match="key"):
        sql.kv_set("ns", "k" * 256, 1)
    assert sql.buffered == 0


def test_schema_and_statements_compile_for_postgresql(sql: SqlStore) -> None:
    """The same Core code targets PostgreSQL (no server here: compile only)."""
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    ddl = "\n".join(
        str(sa.schema.CreateTable(t).compile(dialect=dialect)) for t in sql.metadata.sorted_tables
    )
    assert "id BIGSERIAL NOT NULL" in ddl
    assert "ts TIMESTAMP WITH TIME ZONE NOT NULL" in ddl
    assert "data JSON NOT NULL" in ddl
    assert "PRIMARY KEY (namespace, key)" in ddl
    t = sql.kv_table
    query = sa.select(t.c.key).where(t.c.key.startswith("a_", autoescape=True))
    assert "LIKE" in str(query.compile(dialect=dialect))


def test_record_event_copies_data(sql: SqlStore) -> None:
    data: dict[str, object] = {"tags": ["vip"]}
    sql.record_event("e", ts=T0, data=data)
    data["tags"] = ["changed"]
    assert sql.events()[0]["data"] == {"tags": ["vip"]}


def test_failed_flush_keeps_the_events(sql: SqlStore) -> None:
    with sql.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE events")
    sql.record_event("e", ts=T0, data={"n": 1})
    with pytest.raises(sa.exc.OperationalError):
        sql.flush()
    assert sql.buffered == 1
    sql.create_all()
    sql.record_event("e", ts=T0, data={"n": 2})
    assert [r["data"] for r in sql.events()] == [{"n": 1}, {"n": 2}]


def test_failed_auto_flush_does_not_fail_the_caller(tmp_path: Path) -> None:
    sql = SqlStore(_url(tmp_path / "t.sqlite3"), batch_size=2, max_buffered=5)
    sql.create_all()
    with sql.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE events")
    for n in range(8):
        sql.record_event("e", ts=T0, data={"n": n})  # auto flushes fail, are logged
    assert sql.buffered == 5
    assert sql.dropped_events == 3
    sql.create_all()
    assert [r["data"] for r in sql.events()] == [{"n": n} for n in range(3, 8)]
    sql.close()


async def test_run_flusher_flushes_periodically(
    sql: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sleep = asyncio.sleep
    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    sql.record_event("e", ts=T0)  # rides along with the urgent write below
    sql.defer("received", lambda conn: None, urgent=True)
    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    task = asyncio.create_task(sql.run_flusher())
    for _ in range(3):
        await real_sleep(0)
    assert _count_rows(sql) == 1
    assert delays and delays[0] == sql.group_window  # a few ms after the write
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_run_flusher_flushes_on_cancel(tmp_path: Path) -> None:
    sql = SqlStore(_url(tmp_path / "t.sqlite3"), flush_interval=3600)
    sql.create_all()
    task = asyncio.create_task(sql.run_flusher())
    await asyncio.sleep(0)  # the flusher is now waiting for its first interval
    sql.record_event("e", ts=T0)
    assert _count_rows(sql) == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _count_rows(sql) == 1
    sql.close()


def test_close_flushes(tmp_path: Path) -> None:
    sql = SqlStore(_url(tmp_path / "t.sqlite3"))
    sql.create_all()
    sql.record_event("e", ts=T0, data={"last": True})
    sql.close()
    sql.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        sql.record_event("e", ts=T0)
    again = SqlStore(_url(tmp_path / "t.sqlite3"))
    assert [r["data"] for r in again.events()] == [{"last": True}]
    again.close()


# -- seen message ids ------------------------------------------------------------------


def test_mark_seen_is_true_once_and_survives_reopen(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        assert store.sql.mark_seen("msg-1", T0) is True
        assert store.sql.mark_seen("msg-1", T0) is False
        assert store.sql.mark_seen("msg-2", T0) is True
    with Store(tmp_path) as store:
        assert store.sql.mark_seen("msg-1", T0 + timedelta(days=1)) is False
        assert store.sql.mark_seen("msg-3", T0) is True


def test_prune_seen(store: Store) -> None:
    for day in range(5):
        store.sql.mark_seen(f"m{day}", T0 + timedelta(days=day))
    assert store.sql.prune_seen(T0 + timedelta(days=3)) == 3
    assert _count_rows(store.sql, "seen_messages") == 2
    assert store.sql.mark_seen("m0", T0) is True  # forgotten, so new again
    assert store.sql.mark_seen("m4", T0) is False
    with pytest.raises(ValueError):
        store.sql.prune_seen(datetime(2026, 1, 1))


# -- key/value -------------------------------------------------------------------------


def test_kv_namespaces_do_not_collide_and_survive_reopen(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        a, b = store.namespace("alpha"), store.namespace("beta")
        a.set("count", 1)
        b.set("count", {"n": 2, "名": "鱼塘"})
        assert a.get("count") == 1
        assert b.get("count") == {"n": 2, "名": "鱼塘"}
        a.set("count", 3)  # update in place
        assert b.get("count") == {"n": 2, "名": "鱼塘"}
    with Store(tmp_path) as store:
        a, b = store.namespace("alpha"), store.namespace("beta")
        assert a.get("count") == 3
        assert b.get("count") == {"n": 2, "名": "鱼塘"}
        b.delete("count")
        b.delete("count")  # deleting a missing key is fine
        assert b.get("count", "gone") == "gone"
        assert a.items() == [("count", 3)]


def test_kv_stores_none_distinct_from_missing(store: Store) -> None:
    ns = store.namespace("greeter")
    ns.set("nothing", None)
    assert ns.get("nothing", "default") is None
    assert ns.get("missing", "default") == "default"


def test_kv_items_prefix_is_exact(store: Store) -> None:
    ns = store.namespace("greeter")
    for key in ["k1", "k2", "K3", "kx_", "k_1", "k%1", "other"]:
        ns.set(key, key)
    assert [k for k, _ in ns.items("k")] == ["k%1", "k1", "k2", "k_1", "kx_"]
    assert ns.items("k_") == [("k_1", "k_1")]  # "_" is not a wildcard
    assert ns.items("k%") == [("k%1", "k%1")]  # nor is "%"
    assert ns.items("K") == [("K3", "K3")]  # case-sensitive even on SQLite
    assert len(ns.items()) == 7


def test_kv_refuses_values_json_cannot_hold(store: Store) -> None:
    ns = store.namespace("greeter")
    with pytest.raises(TypeError):
        ns.set("when", T0)
    with pytest.raises(ValueError):
        ns.set("nan", math.inf)
    with pytest.raises(ValueError):
        ns.set("", 1)
    assert ns.items() == []


def test_namespace_table_is_the_plugins_doc_file(store: Store) -> None:
    ns = store.namespace("greeter")
    assert isinstance(ns, Namespace)
    assert ns.name == "greeter"
    ns.table().insert({"a": 1})
    ns.table("rules").insert({"kw": "价格"})
    assert ns.table("rules").all() == [{"kw": "价格"}]
    assert store.docs.db("greeter").table("_default").all() == [{"a": 1}]
    assert (store.data_dir / "docs" / "greeter.json").exists()


# -- the Store -------------------------------------------------------------------------


def test_store_creates_data_dir_and_sqlite_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    with Store(data_dir) as store:
        assert (data_dir / "pond.sqlite3").exists()
        with store.sql.engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
            fks = conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one()
        assert (mode, sync, fks) == ("wal", 1, 1)  # 1 = NORMAL


def test_store_accepts_a_database_url(tmp_path: Path) -> None:
    with Store(tmp_path / "d", _url(tmp_path / "elsewhere.db")) as store:
        store.namespace("x").set("k", 1)
    assert (tmp_path / "elsewhere.db").exists()
    assert not (tmp_path / "d" / "pond.sqlite3").exists()


def test_more_tables_on_the_metadata(store: Store) -> None:
    contacts = sa.Table(
        "contacts",
        store.sql.metadata,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200)),
    )
    store.sql.create_all()
    with store.sql.engine.begin() as conn:
        conn.execute(sa.insert(contacts).values(id="wxid_1", name="小王"))
        assert conn.execute(sa.select(contacts.c.name)).scalar_one() == "小王"


def test_garbage_sqlite_file_is_store_corrupt(tmp_path: Path) -> None:
    db_file = tmp_path / "pond.sqlite3"
    garbage = b"this is not a database, just bytes\n" * 200
    db_file.write_bytes(garbage)
    with pytest.raises(StoreCorrupt) as info:
        Store(tmp_path)
    assert info.value.path == db_file
    assert f"数据库文件 {db_file} 已损坏" in str(info.value)
    assert db_file.read_bytes() == garbage
