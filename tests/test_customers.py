"""The customer book and segments (kernel pieces the capability plugins share)."""

from __future__ import annotations

import pytest
from harness import ChatSim

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
    with pytest.raises(ValueError, match="spaces"):
        sim.app.book.tag("alice", ["two words"], sim.clock.now())


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
