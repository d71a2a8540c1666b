"""Always-on core: opt-out (退订) and opt-in by meaning, in the persona's voice."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness import ROOT, ChatSim

from plugins._core.optout import OptoutDataError, Verdict, load
from pond import Action, ActionClass, ActionKind, StartupError

CORPUS = ROOT / "tests" / "data" / "optout_corpus.tsv"
LABELS = {v.value for v in Verdict} - {Verdict.YES.value}


def corpus() -> list[tuple[str, str]]:
    rows = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            label, message = line.split("\t")
            rows.append((label, message))
    return rows


def test_the_opt_out_corpus_is_read_as_labelled() -> None:
    rows = corpus()
    assert len(rows) >= 60
    assert {label for label, _ in rows} == LABELS  # every kind is covered
    matcher = load(ROOT / "persona" / "core" / "optout.toml", "core/optout.toml", ["退订"], [])
    wrong = []
    for label, message in rows:
        got = matcher.judge(message).value
        got = "none" if got == "yes" else got  # a bare yes means nothing until we asked
        if got != label:
            wrong.append(f"{message!r}: expected {label}, got {got}")
    assert wrong == []


@pytest.fixture
async def own(tmp_path: Path) -> AsyncIterator[ChatSim]:
    """A sim on a copy of the persona folder, so a test may edit optout.toml."""
    persona = tmp_path / "persona"
    shutil.copytree(ROOT / "persona", persona)
    chat = await ChatSim.create(
        tmp_path / "data", plugins=["greeter"], env={"BOT_PERSONA_DIR": str(persona)}
    )
    yield chat
    await chat.close()


async def push(sim: ChatSim, who: str) -> str:
    """A marketing message (a calendar push, a broadcast) to `who`: its outcome."""
    action = Action(
        ActionKind.SEND, to=who, cls=ActionClass.MARKETING, text="新茶上市", key="x", contact_id=who
    )
    future = sim.app.outbox.submit(action)
    await sim.drain()
    return future.result().status


async def test_customers_say_stop_in_their_own_words(sim: ChatSim) -> None:
    for who, text in [("alice", "不要再发了"), ("bob", "别发了！！"), ("carol", "退订了")]:
        assert (await sim.say(who, text)).keys == ["core/optout_confirm"]
        assert sim.app.ledger.is_opted_out(who)
        assert await push(sim, who) == "skipped"  # the later calendar push does not reach them
    assert await push(sim, "dave") == "sent"


async def test_asking_how_explains_and_does_not_opt_out(sim: ChatSim) -> None:
    said = await sim.say("alice", "怎么退订？")
    assert said.keys == ["core/optout_howto"] and "「退订」" in said.texts[0]
    assert not sim.app.ledger.is_opted_out("alice")
    assert (await sim.say("alice", "退订")).keys == ["core/optout_confirm"]
    again = await sim.say("alice", "怎么退订")
    assert again.keys == ["core/optout_howto"] and "已经退订" in again.texts[0]


async def test_saying_no_to_opting_out_is_not_an_opt_out(sim: ChatSim) -> None:
    for text in ("不退订", "我没说要退订", "不要再发错地址了"):
        assert (await sim.say("alice", text)).keys == []
    assert not sim.app.ledger.is_opted_out("alice")


async def test_an_unclear_complaint_is_asked_about_and_a_yes_opts_out(sim: ChatSim) -> None:
    said = await sim.say("alice", "太多了")
    assert said.keys == ["core/optout_ask"] and "要退订吗" in said.texts[0]
    assert not sim.app.ledger.is_opted_out("alice")
    assert (await sim.say("alice", "是的")).keys == ["core/optout_confirm"]
    assert sim.app.ledger.is_opted_out("alice")
    assert (await sim.say("alice", "烦")).keys == []  # already out: nothing to ask
    # A yes from someone we did not ask, or asked long ago, is just a yes.
    assert (await sim.say("bob", "是的")).keys == []
    await sim.say("carol", "烦死了")
    await sim.advance(3600)
    assert (await sim.say("carol", "是")).keys == []
    assert not sim.app.ledger.is_opted_out("bob") and not sim.app.ledger.is_opted_out("carol")


async def test_copywriters_add_ways_of_saying_stop_without_a_restart(own: ChatSim) -> None:
    words = own.app.settings.bot.persona_dir / "core" / "optout.toml"
    assert (await own.say("alice", "再见不联系")).keys == []
    text = words.read_text(encoding="utf-8").replace('"拉黑",', '"拉黑", "不联系",')

    def save(content: str) -> None:
        before = words.stat().st_mtime_ns
        words.write_text(content, encoding="utf-8")
        os.utime(words, ns=(before + 10**9, before + 10**9))

    save(text)
    await own.advance(5)
    assert (await own.say("bob", "再见不联系")).keys == ["core/optout_confirm"]
    save("[optout\n")  # a broken save: the last good words keep serving
    await own.advance(5)
    assert (await own.say("carol", "再见不联系")).keys == ["core/optout_confirm"]
    assert (await own.say("dave", "别发了")).keys == ["core/optout_confirm"]


def test_a_broken_word_list_is_told_in_chinese(tmp_path: Path) -> None:
    words = tmp_path / "optout.toml"
    told = "core/optout.toml："
    for content, expected in (
        ("[extra]\n", "不认识的表 extra，只能用 [optout]、[optin]、[ambiguous] 和 [guards]"),
        ("[guards]\nmax_chars = 0\n", "[guards] 的 max_chars 要写 1 到 500 之间的整数"),
        (
            '[optout]\nexact = "退订"\n',
            '[optout] 的 exact 要写成词语列表，例如 ["别发了", "不要再发了"]',
        ),
    ):
        words.write_text(content, encoding="utf-8")
        with pytest.raises(OptoutDataError) as caught:
            load(words, "core/optout.toml", ["退订"], [])
        assert str(caught.value) == told + expected


async def test_a_broken_word_list_stops_start_up_naming_it(tmp_path: Path) -> None:
    persona = tmp_path / "persona"
    shutil.copytree(ROOT / "persona", persona)
    (persona / "core" / "optout.toml").write_text("[guards]\nmax_chars = 0\n", encoding="utf-8")
    with pytest.raises(StartupError) as caught:
        await ChatSim.create(tmp_path / "data", env={"BOT_PERSONA_DIR": str(persona)})
    assert "core/optout.toml：[guards] 的 max_chars 要写 1 到 500 之间的整数" in str(caught.value)


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


async def test_subscribing_again_in_their_own_words(sim: ChatSim) -> None:
    await sim.say("alice", "别再给我发消息了")
    assert (await sim.say("alice", "我要重新订阅")).keys == ["core/optin_confirm"]
    assert not sim.app.ledger.is_opted_out("alice")
    assert await push(sim, "alice") == "sent"
