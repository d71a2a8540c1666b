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


async def test_admin_asks_for_help_in_chinese_or_english(sim: ChatSim) -> None:
    said = await sim.say("admin", "帮助")
    assert said.keys == ["core/admin_help"]
    assert "帮助" in said.texts[0]
    assert (await sim.say("admin", "/help")).keys == ["core/admin_help"]


async def test_help_for_one_command_shows_its_usage(sim: ChatSim) -> None:
    said = await sim.say("admin", "帮助 菜单")
    assert said.keys == ["core/admin_help_one"]
    assert "help" in said.texts[0] and "用法" in said.texts[0]


async def test_commands_from_non_admins_are_just_messages(sim: ChatSim) -> None:
    assert (await sim.say("mallory", "帮助")).keys == []
    assert sim.app.store.sql.events(kind="admin.command") == []


async def test_commands_are_private_only(sim: ChatSim) -> None:
    assert (await sim.say("admin", "帮助", room="r1", mention=True)).keys == []


async def test_binding_code_makes_an_admin_once(sim: ChatSim) -> None:
    code = sim.app.admins.binding_code
    said = await sim.say("owner", code)
    assert [(s.to, s.key) for s in said] == [
        ("admin", "core/admin_bound_alert"),  # the admins there were hear of it
        ("owner", "core/admin_bound"),
    ]
    assert (await sim.say("owner", "帮助")).keys == ["core/admin_help"]
    assert (await sim.say("mallory", code)).keys == ["core/admin_code_wrong"]  # used up
    assert not sim.app.admins.is_admin("mallory")
    await sim.restart()
    assert sim.app.admins.is_admin("owner")  # bindings persist


async def test_every_command_is_audited(sim: ChatSim) -> None:
    await sim.say("admin", "帮助 全部")
    [audit] = sim.app.store.sql.events(kind="admin.command")
    assert audit["contact_id"] == "admin"
    assert audit["data"] == {"command": "help", "args": ["全部"], "origin": "chat"}
