"""The customer book and segments (kernel pieces the capability plugins share)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import ChatSim

from pond import Problem
from pond.segments import Segment, SegmentError


async def test_a_customer_who_speaks_is_in_the_book_with_last_inbound(sim: ChatSim) -> None:
    await sim.say("alice", "随便问问")
    customer = sim.app.book.get("alice")
    assert customer is not None
    assert customer.name == "alice"
    assert customer.last_inbound == sim.clock.now().timestamp()


async def test_tags_drive_segments_and_persona_layers(sim: ChatSim) -> None:
    now = sim.clock.now()
    assert sim.app.book.tag("alice", ["vip", "channel:A1"], now, source="test") == [
        "vip",
        "channel:A1",
    ]
    assert sim.app.book.tag("alice", ["vip"], now) == []
    sim.app.book.tag("bob", ["channel:A2", "churned"], now)
    sim.app.book.tag("carol", ["channel:A1"], now)
    assert sim.app.book.select("channel:A1 or channel:A2") == ["alice", "bob", "carol"]
    assert sim.app.book.select("(channel:A1 or channel:A2) and not churned") == ["alice", "carol"]
    said = await sim.say("alice", "你好")
    assert "VIP" in said.texts[0]  # the vip layer's override of greeter/hello
    assert sim.app.book.untag("alice", ["vip", "nope"]) == ["vip"]


async def test_bad_tags_are_refused(sim: ChatSim) -> None:
    with pytest.raises(ValueError, match="不能有空格") as error:
        sim.app.book.tag("alice", ["two words"], sim.clock.now())
    assert isinstance(error.value, Problem) and "spaces" in error.value.english


def test_segment_grammar_errors_say_where() -> None:
    assert Segment.parse("a 且 非 b").matches({"a"})
    for bad in ["", "a and", "(a", "a b", "or a"]:
        with pytest.raises(SegmentError):
            Segment.parse(bad)


async def test_delete_erases_record_and_tags(sim: ChatSim) -> None:
    sim.app.book.tag("dave", ["vip"], sim.clock.now())
    assert sim.app.book.delete("dave")
    assert sim.app.book.get("dave") is None
    assert sim.app.book.tags("dave") == frozenset()


def test_segment_errors_point_at_the_position() -> None:
    with pytest.raises(SegmentError, match="「vip and」没写完：第 8 个字符") as error:
        Segment.parse("vip and")
    assert error.value.pos == 8  # just after the end
    assert "ends too early" in error.value.english  # for developers and logs
    with pytest.raises(SegmentError, match="左括号"):
        Segment.parse("(vip or a")
    with pytest.raises(SegmentError) as error:
        Segment.parse("vip b")
    assert error.value.pos == 5


async def test_segments_see_derived_words(sim: ChatSim) -> None:
    book, now = sim.app.book, sim.clock.now()
    book.upsert("alice", now, channel="A1")
    book.upsert("bob", now, is_friend=False)
    book.upsert("carol", now)
    book.set_stage("carol", "churned", now)
    sim.app.outbox.opt_out("alice", source="test")
    assert book.select("opted_out") == ["alice"]
    assert book.select("channel:A1") == ["alice"]  # from the channel column, no tag needed
    assert book.select("friend and not churned and not opted_out") == []
    assert book.select("not friend") == ["bob"]
    assert book.select("churned or stage:churned") == ["carol"]
    assert "opted_out" in book.facts("alice")
    assert book.facts("nobody") == frozenset()


async def test_consent_notes_and_lifecycle(sim: ChatSim) -> None:
    book, now = sim.app.book, sim.clock.now()
    book.upsert("alice", now)
    entry = book.record_consent("alice", "contact", now, how="friend_request", source="A1")
    assert entry == {
        "granted": True,
        "at": now.timestamp(),
        "how": "friend_request",
        "source": "A1",
    }
    book.add_note("alice", "  likes   oolong ", now)
    book.add_note("alice", "second", now)
    customer = book.get("alice")
    assert customer is not None
    assert customer.consent["contact"]["how"] == "friend_request"
    assert customer.notes.endswith("likes oolong\n2026-11-23 10:00 second")
    assert book.set_stage("alice", "customer", now) == "new"
    with pytest.raises(ValueError, match="没有「vip」这个客户阶段"):
        book.set_stage("alice", "vip", now)


async def test_speaking_makes_a_new_contact_engaged_and_subscribers_hear_it(sim: ChatSim) -> None:
    heard: list[tuple[str, str, str]] = []
    sim.app.book.subscribe(lambda c: heard.append((c.kind, c.contact_id, c.stage)))
    sim.app.book.upsert("alice", sim.clock.now())
    assert sim.app.book.get("alice").stage == "new"  # type: ignore[union-attr]
    await sim.say("alice", "在吗")
    sim.app.book.flush()
    assert sim.app.book.get("alice").stage == "engaged"  # type: ignore[union-attr]
    sim.app.book.tag("alice", ["vip"], sim.clock.now())
    assert heard == [
        ("created", "alice", ""),
        ("stage", "alice", "engaged"),
        ("tagged", "alice", ""),
    ]


async def test_room_speakers_are_not_friends_unless_the_transport_says_so(sim: ChatSim) -> None:
    from pond import Contact

    stranger = Contact("stranger", name="路人", is_friend=False)
    await sim.say(stranger, "大家好", room="r1@chatroom", mention=True)
    await sim.say("pal", "大家好", room="r1@chatroom", mention=True)
    sim.app.book.flush()
    assert sim.app.book.get("stranger").is_friend is False  # type: ignore[union-attr]
    assert sim.app.book.get("pal").is_friend is True  # type: ignore[union-attr]
    await sim.say(stranger, "你好")  # a private message proves friendship
    sim.app.book.flush()
    assert sim.app.book.get("stranger").is_friend is True  # type: ignore[union-attr]


async def test_iter_all_and_inactive_for_exports_and_retention(sim: ChatSim) -> None:
    book, now = sim.app.book, sim.clock.now()
    for i in range(5):
        book.upsert(f"c{i}", now)
    book.tag("c3", ["vip"], now)
    every = list(book.iter_all(chunk=2))
    assert [c.id for c in every] == ["c0", "c1", "c2", "c3", "c4"]
    assert every[3].tags == {"vip"}
    later = now.timestamp() + 10
    assert book.inactive(later) == ["c0", "c1", "c2", "c3", "c4"]
    book.upsert("c0", now, purged_at=later)
    assert "c0" not in book.inactive(later)


def test_an_older_database_gets_the_new_columns(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from pond.customers import CustomerBook

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE customers (id VARCHAR(128) PRIMARY KEY, name VARCHAR(255) NOT NULL, "
            "alias VARCHAR(255) NOT NULL, channel VARCHAR(64) NOT NULL, stage VARCHAR(16) "
            "NOT NULL, first_seen FLOAT, last_inbound FLOAT, last_outbound FLOAT, is_friend "
            "BOOLEAN NOT NULL, notes TEXT NOT NULL, consent JSON NOT NULL)"
        )
        conn.exec_driver_sql(
            "INSERT INTO customers VALUES ('old', 'n', '', '', 'new', 1, 1, NULL, 1, '', '{}')"
        )
    book = CustomerBook(engine, sa.MetaData())
    customer = book.get("old")
    assert customer is not None
    assert customer.stage_at is None and customer.purged_at is None
