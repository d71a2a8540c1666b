"""Always-on core: opt-out (退订) and opt-in, in the persona's voice."""

from __future__ import annotations

from harness import ChatSim


async def test_opt_out_is_confirmed_once_and_recorded(sim: ChatSim) -> None:
    assert (await sim.say("alice", "退订")).keys == ["core/optout_confirm"]
    assert (await sim.say("alice", "TD")).keys == []
    assert sim.app.ledger.is_opted_out("alice")
    first, again = sim.app.store.sql.events(kind="contact.opt_out")
    assert first["contact_id"] == "alice"
    assert first["data"] == {"source": "keyword", "new": True}
    assert again["data"]["new"] is False  # type: ignore[index]


async def test_opt_in_only_answers_someone_who_opted_out(sim: ChatSim) -> None:
    assert (await sim.say("bob", "恢复订阅")).keys == []
    await sim.say("bob", "不要再发")
    assert (await sim.say("bob", "恢复订阅")).keys == ["core/optin_confirm"]
    assert not sim.app.ledger.is_opted_out("bob")


async def test_keywords_in_rooms_are_not_opt_outs(sim: ChatSim) -> None:
    assert (await sim.say("carol", "退订", room="r1", mention=True)).keys == []
    assert not sim.app.ledger.is_opted_out("carol")
