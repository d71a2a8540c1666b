"""scripts/admin.py: the operator commands from a terminal, on the bot's own data.

With no bot running it works on the data files itself (nothing can be sent); with a bot
running (a fresh heartbeat) it hands the command to that bot through the mailbox, so the
bot's in-memory state stays right. Either way the output is what the chat command says."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, ChatSim, load_script

from pond import Action, ActionClass, ActionKind, RowStatus, health
from pond.pauses import ALL

cli: Any = load_script("admin", "admin_cli")


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await ChatSim.create(tmp_path / "data", plugins=["admin", "greeter"])
    yield chat
    await chat.close()


async def tool(
    sim: ChatSim, *words: str, bot: health.Heartbeat | None = None, timeout: float = 5.0
) -> tuple[int, str]:
    """Run the tool on the sim's data and clock; with `bot`, the sim's App is the running
    bot and serves the mailbox whenever the tool waits."""
    out = io.StringIO()

    async def sleep(seconds: float) -> None:
        if bot is not None:
            await bot.serve_mailbox()
            await sim.driver.settle()

    argv = [*words, "--timeout", str(timeout)]
    code = await cli.run(argv, settings=sim.settings(), clock=sim.clock, out=out, sleep=sleep)
    return code, out.getvalue()


async def running(sim: ChatSim) -> health.Heartbeat:
    beat = health.Heartbeat(sim.app)
    await beat.start()
    return beat


def durable(text: str) -> list[str]:
    """The status lines that come from the data (not from the live process)."""
    lines = text.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("今天用量")) :]


async def activity(sim: ChatSim) -> None:
    await sim.say("alice", "你好")
    await sim.say("admin", "暂停 bob 2h")
    sim.app.pauses.pause("carol", minutes=None, reason="takeover")


# -- status matches ----------------------------------------------------------------------------
async def test_status_through_the_running_bot_is_the_chat_status(sim: ChatSim) -> None:
    await activity(sim)
    bot = await running(sim)
    code, printed = await tool(sim, "status", bot=bot)
    said = await sim.say("admin", "状态")
    assert code == 0
    assert printed.strip() == said.texts[0]
    assert sim.transport.performed[-1].action.key == "admin/status"  # the tool sent nothing


async def test_status_without_a_bot_matches_on_the_same_data(sim: ChatSim) -> None:
    await activity(sim)
    code, printed = await tool(sim, "状态")  # Chinese names work too
    said = await sim.say("admin", "状态")
    assert code == 0
    assert durable(printed) == durable(said.texts[0])
    assert "⚠ 机器人没有在运行" in printed and "待发队列：未知" in printed
    assert "bob：管理员暂停" in printed and "carol：有人在手机上接手" in printed


async def test_status_after_a_clean_stop_says_so(sim: ChatSim) -> None:
    bot = await running(sim)
    bot.close()
    code, printed = await tool(sim, "status")
    assert code == 0 and "（正常停止）" in printed and "待发队列：0 个（最后心跳时）" in printed


async def test_status_as_json(sim: ChatSim) -> None:
    await activity(sim)
    code, printed = await tool(sim, "status", "--json")
    snap = json.loads(printed)
    assert code == 0 and snap["running"] is False
    assert snap["counters"][0] == {"kind": "send", "n": 2, "cap": 800}
    assert [p["chat_id"] for p in snap["paused"]] == ["bob", "carol"]
    bot = await running(sim)
    code, printed = await tool(sim, "status", "--json", bot=bot)
    assert json.loads(printed)["running"] is True


# -- commands ------------------------------------------------------------------------------------
async def test_pause_without_a_bot_is_kept_for_the_next_start(sim: ChatSim) -> None:
    code, printed = await tool(sim, "pause", "all")
    assert code == 0 and "已全部暂停" in printed
    await sim.restart()
    assert sim.app.pauses.reason(ALL) == "operator"
    [audit] = sim.app.store.sql.events(kind="admin.command")
    assert audit["contact_id"].startswith("cli:")  # type: ignore[union-attr]
    assert audit["data"] == {"command": "pause", "args": ["all"], "origin": "cli"}
    code, printed = await tool(sim, "resume")
    await sim.restart()
    assert sim.app.pauses.reason(ALL) is None


async def test_pause_with_a_running_bot_takes_effect_in_the_bot(sim: ChatSim) -> None:
    bot = await running(sim)
    code, printed = await tool(sim, "暂停", "alice", "30分钟", bot=bot)
    assert code == 0 and "已暂停聊天 alice" in printed
    assert sim.app.pauses.reason("alice") == "operator"  # the bot's own memory
    assert (await sim.say("alice", "你好")).keys == []
    code, _ = await tool(sim, "resume", "alice", bot=bot)
    assert (await sim.say("alice", "你好")).keys == ["greeter/hello"]


async def test_reviews_and_resolve_from_the_terminal(sim: ChatSim) -> None:
    action = Action(
        ActionKind.SEND,
        to="alice",
        cls=ActionClass.MARKETING,
        text="新茶上市",
        key="broadcasts/new_tea",
        job="spring",
        contact_id="alice",
    )
    sim.app.outbox.enqueue_bulk("spring", [action])
    sim.app.ledger.mark("spring", "alice", RowStatus.SENDING, 0.0)
    await sim.restart()  # a crash left it unknown
    code, printed = await tool(sim, "reviews")
    assert code == 0 and "1. 群发未确认送达：alice" in printed
    code, printed = await tool(sim, "resolve", "1", "sent")
    assert code == 0 and "已记为送达 1 条" in printed
    assert sim.app.ledger.rows_of("spring")[0].status is RowStatus.SENT


async def test_reload_without_a_bot_is_a_check(sim: ChatSim) -> None:
    code, printed = await tool(sim, "reload")
    assert code == 0 and "机器人现在没有运行" in printed


async def test_report_from_the_terminal(sim: ChatSim) -> None:
    await sim.say("alice", "你好")
    bot = await running(sim)  # the bot's recent events are still in its write-behind buffer
    code, printed = await tool(sim, "report", "today", bot=bot)
    assert code == 0 and "今天到现在" in printed and "客户消息 1 条" in printed
    bot.close()  # a stopped bot has flushed everything: the tool reads the data directly
    await sim.restart()
    code, printed = await tool(sim, "report", "today")
    assert code == 0 and "客户消息 1 条" in printed


# -- the binding code -----------------------------------------------------------------------------
async def test_binding_code_comes_from_the_running_bot(sim: ChatSim) -> None:
    code, _ = await tool(sim, "code")
    assert code == 1  # no bot: it prints the code itself at start-up
    bot = await running(sim)
    first = sim.app.admins.binding_code
    code, printed = await tool(sim, "code", bot=bot)
    assert code == 0 and first in printed
    assert "11-23 10:15 前有效" in printed  # 15 minutes from the start, in the bot's timezone
    assert printed.startswith("管理员绑定码：") and "binding" not in printed


async def test_a_new_binding_code_from_the_terminal(sim: ChatSim) -> None:
    bot = await running(sim)
    first = sim.app.admins.binding_code
    code, printed = await tool(sim, "code", "--new", bot=bot)
    second = sim.app.admins.binding_code
    assert code == 0 and second != first and second in printed and "新的" in printed
    assert (await sim.say("owner", first)).keys == ["core/admin_code_wrong"]  # void now
    await sim.advance(20 * 60)  # expired: asking again makes a new one
    bot.beat()
    code, printed = await tool(sim, "绑定码", bot=bot)
    third = sim.app.admins.binding_code
    assert code == 0 and third not in (first, second) and third in printed
    assert (await sim.say("owner", third)).keys[-1] == "core/admin_bound"
    shown = [e["data"] for e in sim.app.store.sql.events(kind="admin.code_shown")]
    assert shown == [{"new": True}, {"new": True}]


# -- bad input ------------------------------------------------------------------------------------
async def test_unknown_command_prints_the_command_list(sim: ChatSim) -> None:
    code, printed = await tool(sim, "frobnicate")
    assert code == 2 and "管理员命令" in printed and "【运营管理】" in printed


async def test_wrong_arguments_print_the_usage(sim: ChatSim) -> None:
    code, printed = await tool(sim, "pause", "a", "b", "c")
    assert code == 2 and "「暂停」的用法" in printed
    bot = await running(sim)
    code, printed = await tool(sim, "pause", "a", "b", "c", bot=bot)
    assert code == 2 and "「暂停」的用法" in printed


async def test_a_bot_that_does_not_answer(sim: ChatSim) -> None:
    await running(sim)  # a heartbeat, but nobody serves the mailbox
    code, printed = await tool(sim, "status", timeout=1.0)
    assert code == 1 and printed == ""
    assert sim.app.store.namespace("health").items("cli:") == []  # the request was taken back


async def test_settings_from_the_command_line(sim: ChatSim, tmp_path: Path) -> None:
    out = io.StringIO()
    argv = ["status", "--data-dir", str(sim.data_dir), "--env-file", str(tmp_path / "none")]
    assert await cli.run(argv, clock=sim.clock, out=out) == 0
    assert "今天用量" in out.getvalue()


# -- the real process -----------------------------------------------------------------------------
def test_data_files_are_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "POND_NO_VENV": "1", "BOT_LOG_FILE": str(tmp_path / "pond.log")}
    result = subprocess.run(
        [sys.executable, "bot.py", "--check", "--data-dir", str(data), "--env-file", "none"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = [p for p in data.rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), files
    assert stat.S_IMODE((tmp_path / "pond.log").stat().st_mode) == 0o600


async def test_the_terminal_todo_lists_staff_posts_and_broadcasts_too(tmp_path: Path) -> None:
    """Offline (no start-up hooks ran in the tool's App): the calendar and broadcasts read
    their review items and agenda from the files and the store."""
    from test_admin import operators_day

    day = await operators_day(tmp_path)
    await day.advance(90 * 60 + 60)  # 09:31: the morning post waits for staff
    settings = {**day.env, "BOT_PLUGINS": "calendar,broadcasts"}
    day.env = settings
    code, printed = await tool(day, "reviews")
    assert code == 0, printed
    assert "待人工发布的朋友圈「晨间茶」" in printed and "已发 morning" in printed
    assert "群发待确认开始「spring sale」" in printed
    assert "20:00 群发「double12 sale」 id：double12（3 人）" in printed
    await day.close()
