"""The same store code on both engines: every test runs on SQLite (the data dir's file) and on
a fresh PostgreSQL database (a real server, see tests/pg.py): events, seen ids, key/values,
documents, the inbox/outbox journals, the ledger (caps, opt-outs, bulk rows), the customer
book, and one conversation end to end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import ChatSim
from tinydb import Query

from pond import Action, ActionKind, rights
from pond.customers import CustomerBook
from pond.ledger import JobStatus, Ledger, RowStatus
from pond.store import Store, migrate

T0 = datetime(2026, 11, 23, 11, 30, tzinfo=UTC)
CST = timezone(timedelta(hours=8))


def dialect(store: Store) -> str:
    return store.sql.engine.dialect.name


@pytest.fixture
def store(tmp_path: Path, engine_url: str) -> Iterator[Store]:
    with Store(tmp_path / "data", engine_url or None) as s:
        assert dialect(s) == ("postgresql" if engine_url else "sqlite")
        yield s


def reopen(store: Store) -> Store:
    store.close()
    url = None if store.sql.is_sqlite else store.sql.url.render_as_string(hide_password=False)
    return Store(store.data_dir, url)


# -- events, seen ids, key/values --------------------------------------------------------------


def test_events_come_back_as_aware_utc_in_order(store: Store) -> None:
    sql = store.sql
    sql.record_event("in.message", ts=T0.astimezone(CST), chat_id="c1", data={"n": 1})
    sql.record_event("in.message", ts=T0, chat_id="c2", data={"n": 2, "名": "小王"})
    sql.record_event("out.sent", ts=T0 + timedelta(minutes=1), chat_id="c1", data={})
    rows = sql.events(kind="in.message")
    assert [r["chat_id"] for r in rows] == ["c1", "c2"]  # same instant: id order
    assert all(r["ts"] == T0 and r["ts"].tzinfo is not None for r in rows)  # type: ignore[union-attr]
    assert rows[1]["data"] == {"n": 2, "名": "小王"}
    assert [r["kind"] for r in sql.events(since=T0 + timedelta(seconds=30))] == ["out.sent"]
    assert len(sql.events(newest_first=True, limit=2)) == 2


def test_seen_ids_are_new_once_across_a_reopen(store: Store) -> None:
    assert store.sql.mark_seen("m1", T0)
    assert not store.sql.mark_seen("m1", T0)
    again = reopen(store)
    try:
        assert not again.sql.mark_seen("m1", T0)
        assert again.sql.prune_seen(T0 + timedelta(seconds=1)) == 1
        assert again.sql.mark_seen("m1", T0)
    finally:
        again.close()


def test_kv_namespaces_prefixes_and_none(store: Store) -> None:
    a, b = store.namespace("greeter"), store.namespace("friends")
    a.set("seen:Alice", {"n": 1, "at": "2026"})
    a.set("seen:alice", None)  # a case-insensitive LIKE would mix these on SQLite
    a.set("seen%_x", 3)
    b.set("seen:Alice", "other")
    assert a.items("seen:A") == [("seen:Alice", {"n": 1, "at": "2026"})]
    assert a.items("seen%") == [("seen%_x", 3)]
    assert a.get("seen:alice", "missing") is None
    assert a.get("nope", "missing") == "missing"
    assert a.incr("count") == 1 and a.incr("count", 5) == 6
    again = reopen(store)
    try:
        ns = again.namespace("greeter")
        assert ns.get_int("count") == 6
        assert again.namespace("friends").get_str("seen:Alice") == "other"
        ns.delete("count")
        assert ns.get("count") is None
    finally:
        again.close()


def test_one_refused_write_does_not_block_the_others(store: Store) -> None:
    sql = store.sql
    sql.defer("dup", lambda conn: conn.execute(sa.insert(sql.kv_table), [KV, KV]))
    store.namespace("greeter").set("kept", 1)
    sql.record_event("in.message", ts=T0)
    sql.flush()
    assert sql.dropped_writes == 1
    assert store.namespace("greeter").get("kept") == 1
    assert len(sql.events()) == 1


KV = {"namespace": "x", "key": "k", "value": 1}


# -- documents (TinyDB files on SQLite, the JSONB table on PostgreSQL) ------------------------


def test_documents_keep_their_ids_and_survive_a_reopen(store: Store) -> None:
    rules = store.namespace("auto_reply").table("rules")
    first = rules.insert({"kw": "价格", "reply": "auto_reply/price", "tags": ["a", "b"]})
    second = rules.insert({"kw": "地址", "reply": "auto_reply/address"})
    rules.update({"reply": "auto_reply/price2"}, Query().kw == "价格")
    rules.remove(doc_ids=[second])
    third = rules.insert({"kw": "进群"})
    assert third == second + 1  # ids are never reused within a run
    store.namespace("calendar").table().insert({"day": "2026-12-01"})
    again = reopen(store)
    try:
        rules = again.namespace("auto_reply").table("rules")
        found = rules.get(Query().kw == "价格")
        assert found is not None and found.doc_id == first
        assert found["reply"] == "auto_reply/price2" and found["tags"] == ["a", "b"]
        assert sorted(d["kw"] for d in rules.all()) == ["价格", "进群"]
        assert rules.insert({"kw": "x"}) == third + 1
        assert again.namespace("calendar").table().all() == [{"day": "2026-12-01"}]
        files = list((again.data_dir / "docs").glob("*.json"))
        if again.sql.is_sqlite:
            assert files
        else:
            assert files == []  # nothing of the account lives in the data dir
            with again.sql.engine.connect() as conn:
                kinds = conn.exec_driver_sql(
                    "SELECT DISTINCT jsonb_typeof(body) FROM documents"
                ).scalars()
                assert list(kinds) == ["object"]
    finally:
        again.close()


# -- the ledger: caps, opt-outs, bulk rows ------------------------------------------------------


def test_ledger_caps_opt_outs_and_bulk_rows(store: Store) -> None:
    ledger = Ledger(store.sql.engine, store.sql.metadata)
    assert ledger.reserve("2026-11-23", {"send": 2, "friend": 1}) is None
    assert ledger.reserve("2026-11-23", {"send": 2, "friend": 1}) == "friend"
    assert ledger.counts("2026-11-23") == {"send": 1, "friend": 1}  # nothing counted
    assert ledger.reserve("2026-11-23", {"send": 2}) is None
    assert ledger.reserve("2026-11-23", {"send": 2}) == "send"
    ledger.release("2026-11-23", ["send"])
    assert ledger.count("2026-11-23", "send") == 1
    with store.sql.engine.begin() as conn:
        assert ledger.reserve_in(conn, "2026-11-24", {"send": 5, "friend": 0}) == "friend"
    assert ledger.counts("2026-11-24") == {"send": 0}  # given back in the same transaction

    assert ledger.set_opt_out("alice", 1.5, "退订")
    assert not ledger.set_opt_out("alice", 2.0, "退订")
    assert ledger.is_opted_out("alice") and ledger.opted_out() == [("alice", 1.5)]
    assert ledger.clear_opt_out("alice") and not ledger.is_opted_out("alice")
    ledger.note_marketing("bob", 10.0)
    ledger.note_marketing("bob", 20.0)
    assert ledger.last_marketing("bob") == 20.0

    actions = [Action(ActionKind.SEND, to=who, text="hi") for who in ("a", "b", "a")]
    assert ledger.create_job("bc1", actions, 1.0, meta={"名": "双十二"}) == 2
    assert ledger.create_job("bc1", actions, 2.0) == 0  # a replayed schedule adds nothing
    assert ledger.job_status("bc1") is JobStatus.ACTIVE
    assert ledger.mark("bc1", "a", RowStatus.SENDING, 3.0, expect=RowStatus.PENDING)
    assert not ledger.mark("bc1", "a", RowStatus.SENDING, 3.0, expect=RowStatus.PENDING)
    assert [r.recipient for r in ledger.pending("bc1")] == ["b"]
    assert [r.recipient for r in ledger.recover(4.0)] == ["a"]
    assert ledger.summary("bc1") == {"pending": 1, "unknown": 1}


def test_accounts_on_one_database_have_their_own_caps_and_share_opt_outs(store: Store) -> None:
    shop = Ledger(store.sql.engine, store.sql.metadata, account="shop")
    staff = Ledger(store.sql.engine, store.sql.metadata, account="staff")
    assert shop.reserve("2026-11-23", {"accept_friend": 1}) is None
    assert shop.reserve("2026-11-23", {"accept_friend": 1}) == "accept_friend"
    assert staff.reserve("2026-11-23", {"accept_friend": 1}) is None  # its own cap
    assert shop.counts("2026-11-23") == staff.counts("2026-11-23") == {"accept_friend": 1}
    with store.sql.engine.begin() as conn:
        assert staff.reserve_in(conn, "2026-11-23", {"send": 9, "accept_friend": 1}) == (
            "accept_friend"
        )
    staff.release("2026-11-23", ["accept_friend"])
    assert staff.count("2026-11-23", "accept_friend") == 0
    assert shop.count("2026-11-23", "accept_friend") == 1

    assert shop.set_opt_out("alice", 1.0, "退订")  # 退订 to one account ...
    assert staff.is_opted_out("alice")  # ... is honoured by every account of the brand
    assert not staff.set_opt_out("alice", 2.0, "退订")
    book = CustomerBook(store.sql.engine, store.sql.metadata)
    assert book.is_opted_out("alice")
    assert staff.clear_opt_out("alice") and not shop.is_opted_out("alice")


# -- the customer book -------------------------------------------------------------------------


def test_customer_book_upserts_tags_and_segments(store: Store) -> None:
    book = CustomerBook(store.sql.engine, store.sql.metadata)
    book.touch("alice", "小爱", T0, is_friend=True)
    book.touch("bob", "Bob", T0 + timedelta(seconds=1))
    book.flush()
    book.touch("alice", "小爱2", T0 + timedelta(hours=1))
    book.flush()
    alice = book.get("alice")
    assert alice is not None and alice.name == "小爱2"
    assert alice.last_inbound == (T0 + timedelta(hours=1)).timestamp()
    assert book.tag("alice", ["vip", "channel:A1"], T0, source="test") == ["vip", "channel:A1"]
    assert book.tag("alice", ["vip"], T0) == []
    book.tag("bob", ["channel:A1", "churned"], T0)
    assert book.select("channel:A1 and not churned") == ["alice"]
    assert book.select("channel:A1") == ["alice", "bob"]
    assert book.untag("alice", ["vip", "nope"]) == ["vip"]
    assert book.count() == 2
    assert [c.id for c in book.iter_all(chunk=1)] == ["alice", "bob"]
    assert book.delete("bob") and book.get("bob") is None


# -- end to end ---------------------------------------------------------------------------------


async def test_a_conversation_end_to_end_survives_a_restart(
    tmp_path: Path, engine_url: str
) -> None:
    env = {"DATABASE_URL": engine_url} if engine_url else {}
    sim = await ChatSim.create(tmp_path / "data", plugins=["greeter", "auto_reply"], env=env)
    try:
        assert dialect(sim.app.store) == ("postgresql" if engine_url else "sqlite")
        assert (await sim.say("alice", "你好")).keys == ["greeter/hello"]
        assert (await sim.say("alice", "价格")).keys == ["auto_reply/price"]
        await sim.restart()
        assert (await sim.say("alice", "你好")).keys == ["greeter/seen_before"]
        assert (await sim.say("bob", "你好")).keys == ["greeter/hello"]
        assert sim.app.inbox.counts() == {"handled": 4}
        assert sim.app.book.tags("alice") == frozenset({"asked:price"})
        assert len(sim.events("in.message")) == 4
    finally:
        await sim.close()


# -- several processes on one PostgreSQL ---------------------------------------------------------


def test_caps_hold_when_workers_race_for_the_last_slots(pg_url: str) -> None:
    """Four workers (own engines, own connections) reserve against one cap at once: the
    database decides, so exactly `cap` actions are counted, never one more."""
    engines = [sa.create_engine(pg_url) for _ in range(4)]
    ledgers = [Ledger(e, sa.MetaData()) for e in engines]
    granted: list[int] = []
    start = threading.Barrier(len(ledgers))

    def work(ledger: Ledger) -> None:
        start.wait()
        for _ in range(40):
            if ledger.reserve("2026-11-23", {"send": 50}) is None:
                granted.append(1)

    try:
        threads = [threading.Thread(target=work, args=(ledger,)) for ledger in ledgers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(granted) == 50
        assert ledgers[0].count("2026-11-23", "send") == 50
    finally:
        for engine in engines:
            engine.dispose()


def test_two_migrations_at_once_build_the_schema_once(pg_url: str) -> None:
    engines = [sa.create_engine(pg_url) for _ in range(2)]
    results: list[tuple[str | None, list[str]]] = []
    start = threading.Barrier(2)

    def work(engine: sa.Engine) -> None:
        start.wait()
        results.append(migrate.upgrade(engine))

    try:
        threads = [threading.Thread(target=work, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results, key=lambda r: r[0] or "") == [
            (None, ["0001", "0002", "0003"]),
            (migrate.HEAD, []),
        ]
    finally:
        for engine in engines:
            engine.dispose()


async def test_erasing_a_customer_reaches_their_documents(tmp_path: Path, engine_url: str) -> None:
    env = {"DATABASE_URL": engine_url} if engine_url else {}
    sim = await ChatSim.create(tmp_path / "data", plugins=["greeter"], env=env)
    try:
        await sim.say("alice", "你好")
        posts = sim.app.store.namespace("calendar").table("notes")
        posts.insert({"by": "alice", "text": "alice 想要新茶"})
        posts.insert({"by": "bob", "text": "送 bob 一份茶样"})
        rights.erase_contact(sim.app, "alice", by="admin")
        remaining = [dict(d) for d in posts.all()]
        assert len(remaining) <= 2 and {"by": "bob", "text": "送 bob 一份茶样"} in remaining
        assert "alice" not in repr(remaining)
    finally:
        await sim.close()
