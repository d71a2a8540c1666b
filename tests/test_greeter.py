"""The sample plugin, as a customer would meet it."""

from __future__ import annotations

import itertools

from harness import ChatSim


async def test_first_hello_gets_the_greeting(sim: ChatSim) -> None:
    said = await sim.say("alice", "你好")
    assert said.keys == ["greeter/hello"]
    assert said.sent[0].to == "alice"
    assert "alice" in said.texts[0]


async def test_returning_customer_is_remembered(sim: ChatSim) -> None:
    await sim.say("alice", "你好")
    again = await sim.say("alice", "在吗")
    assert again.keys == ["greeter/seen_before"]
    assert "2" in again.texts[0]


async def test_memory_survives_a_restart(sim: ChatSim) -> None:
    await sim.say("alice", "你好")
    await sim.restart()
    assert (await sim.say("alice", "hello")).keys == ["greeter/seen_before"]


async def test_silent_on_other_messages_and_in_rooms(sim: ChatSim) -> None:
    assert (await sim.say("alice", "今天天气不错")).keys == []
    assert (await sim.say("bob", "你好", room="r1", mention=True)).keys == []


async def test_two_hellos_in_a_row_get_different_wording(sim: ChatSim) -> None:
    await sim.say("alice", "你好")
    texts = [(await sim.say("alice", "你好")).texts[0] for _ in range(4)]
    assert all(a != b for a, b in itertools.pairwise(texts))
