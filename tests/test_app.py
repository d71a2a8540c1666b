"""The kernel: routing, per-chat order, error isolation, jobs, plugin selection."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ROOT, ChatSim

from pond import Context, HandlerError, Message, Plugin, StartupError, filters
from pond.config import ConfigError


def recorder() -> tuple[Plugin, list[str]]:
    seen: list[str] = []
    plugin = Plugin("probe", persona=["greeter/hello"])

    @plugin.on_message(filters.keyword("price"), priority=10)
    async def price(event: Message, ctx: Context) -> None:
        seen.append(f"price:{event.text}")

    @plugin.on_message(filters.keyword("price"), priority=20)
    async def shadowed(event: Message, ctx: Context) -> None:
        seen.append("shadowed")  # never: the first blocking match wins

    @plugin.on_message(priority=5, block=False)
    async def observe(event: Message, ctx: Context) -> None:
        seen.append(f"observe:{event.text}")

    @plugin.on_message(filters.keyword("hear"), listen_in_rooms=True)
    async def hear(event: Message, ctx: Context) -> None:
        seen.append(f"hear:{event.chat_id}")

    @plugin.on_message(filters.keyword("boom"))
    async def boom(event: Message, ctx: Context) -> None:
        raise RuntimeError("handler bug")

    @plugin.on_message(filters.keyword("slow"))
    async def slow(event: Message, ctx: Context) -> None:
        await asyncio.sleep(0.01)
        seen.append(f"slow:{event.text}")

    @plugin.on_message(filters.keyword("fast"))
    async def fast(event: Message, ctx: Context) -> None:
        seen.append(f"fast:{event.text}")

    @plugin.scheduled("0 9 * * *")
    async def morning(ctx: Context) -> None:
        seen.append(f"morning:{ctx.fire_time:%H:%M}")

    return plugin, seen


@pytest.fixture
async def probe(tmp_path: Path):  # type: ignore[no-untyped-def]
    plugin, seen = recorder()
    sim = await ChatSim.create(tmp_path / "data", plugins=[plugin])
    yield sim, seen
    await sim.close()


async def test_first_blocking_match_wins_and_observers_see_all(probe) -> None:  # type: ignore[no-untyped-def]
    sim, seen = probe
    await sim.say("alice", "price?")
    assert seen == ["observe:price?", "price:price?"]


async def test_rooms_need_a_mention_unless_the_route_listens(probe) -> None:  # type: ignore[no-untyped-def]
    sim, seen = probe
    await sim.say("alice", "price", room="r1")
    await sim.say("alice", "hear me", room="r1")
    assert seen == ["hear:r1"]
    await sim.say("alice", "price", room="r1", mention=True)
    assert seen[-1] == "price:price"


async def test_a_failing_handler_is_isolated_and_fails_tests(probe) -> None:  # type: ignore[no-untyped-def]
    sim, seen = probe
    with pytest.raises(HandlerError):
        await sim.say("alice", "boom")
    await sim.say("alice", "price")  # the bot keeps serving
    assert seen[-1] == "price:price"
    [error] = sim.app.store.sql.events(kind="handler.error")
    assert error["data"] == {"where": "probe.boom", "event": "message", "error": "RuntimeError"}


async def test_one_chat_is_handled_in_order(probe) -> None:  # type: ignore[no-untyped-def]
    sim, seen = probe
    sim.app.strict = True
    from pond import Contact, Message

    alice = Contact("alice", "alice")
    now = sim.clock.now()
    await sim.app.dispatch(Message("a1", alice, "slow 1", now))
    await sim.app.dispatch(Message("a2", alice, "fast 2", now))
    await sim.app.dispatch(Message("b1", Contact("bob"), "fast 3", now))
    await sim.driver.settle()
    assert seen.index("slow:slow 1") < seen.index("fast:fast 2")
    assert seen.index("fast:fast 3") < seen.index("slow:slow 1")  # other chats do not wait


async def test_the_bot_ignores_itself_and_known_bots(tmp_path: Path) -> None:
    plugin, seen = recorder()
    sim = await ChatSim.create(
        tmp_path / "d", plugins=[plugin], env={"BOT_KNOWN_BOT_IDS": "otherbot"}
    )
    await sim.say("bot", "price")
    await sim.say("otherbot", "price")
    assert seen == []
    await sim.close()


async def test_jobs_run_at_their_cron_once_per_fire_time(probe) -> None:  # type: ignore[no-untyped-def]
    sim, seen = probe
    await sim.advance(24 * 3600)  # from 10:00: next 09:00 is tomorrow
    assert seen == ["morning:09:00"]
    fire = sim.clock.now().replace(hour=9, minute=0)
    assert await sim.app.run_job("probe.morning", fire) is False  # replay is a no-op
    assert seen == ["morning:09:00"]
    await sim.tick("probe.morning")
    assert len(seen) == 2


async def test_job_cron_is_overridable_and_validated(tmp_path: Path) -> None:
    plugin, seen = recorder()
    sim = await ChatSim.create(
        tmp_path / "d", plugins=[plugin], env={"JOB_PROBE_MORNING_CRON": "30 10 * * *"}
    )
    await sim.advance(3600)
    assert seen == ["morning:10:30"]
    await sim.close()
    plugin, _ = recorder()
    with pytest.raises(ConfigError, match="JOB_PROBE_MORNING_CRON"):
        await ChatSim.create(
            tmp_path / "e", plugins=[plugin], env={"JOB_PROBE_MORNING_CRON": "every morning"}
        )


async def test_undeclared_persona_key_is_refused(tmp_path: Path) -> None:
    plugin = Plugin("sneaky")

    @plugin.on_message()
    async def say(event: Message, ctx: Context) -> None:
        await ctx.reply("greeter/hello", name="x")

    sim = await ChatSim.create(tmp_path / "d", plugins=[plugin])
    with pytest.raises(HandlerError):
        await sim.say("alice", "hi")
    await sim.close()


async def test_missing_persona_file_stops_startup(tmp_path: Path) -> None:
    plugin = Plugin("ghost", persona=["ghost/missing"])
    with pytest.raises(StartupError, match="ghost/missing"):
        await ChatSim.create(tmp_path / "d", plugins=[plugin])


async def test_a_filter_that_cannot_be_built_is_the_plugins_start_up_problem(
    tmp_path: Path,
) -> None:
    plugin = Plugin("picky")

    def from_data(ctx: Context) -> filters.Filter:
        raise ValueError("picky.toml 第 3 行：写法不对")

    @plugin.on_message(filters.configured(from_data))
    async def answer(event: Message, ctx: Context) -> None: ...

    with pytest.raises(StartupError) as caught:
        await ChatSim.create(tmp_path / "d", plugins=[plugin])
    assert str(caught.value) == "「picky」插件没能启动：picky.toml 第 3 行：写法不对"


def run_bot(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os
    import tempfile

    # Never the checkout's own data/ (a developer's bot, an older release's database).
    scratch = {"BOT_DATA_DIR": tempfile.mkdtemp(prefix="pond-bot-")}
    full_env = {**os.environ, "POND_NO_VENV": "1", **scratch, **(env or {})}
    full_env.pop("WECHATY_PUPPET_SERVICE_TOKEN", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        cwd=ROOT,
    )


def test_unknown_plugin_stops_startup_listing_the_available_ones() -> None:
    result = run_bot("--check", env={"BOT_PLUGINS": "nosuch"})
    assert result.returncode == 2
    assert "nosuch" in result.stderr and "greeter" in result.stderr


def test_malformed_config_value_names_the_key() -> None:
    result = run_bot("--check", env={"OUTBOX_CAP_SEND": "lots"})
    assert result.returncode == 2
    assert "OUTBOX_CAP_SEND" in result.stderr and "整数" in result.stderr


def test_console_script_prints_replies_with_their_persona_key() -> None:
    result = run_bot("--console", "--script", "-", stdin="alice: 你好\n")
    assert result.returncode == 0, result.stderr
    assert "[greeter/hello]" in result.stdout
    assert "→ alice" in result.stdout


async def test_human_takeover_silences_the_bot_in_that_chat_only(sim: ChatSim) -> None:
    from pond import HumanTakeover

    await sim.send_event(HumanTakeover("alice", sim.clock.now(), id="t1"))
    assert (await sim.say("alice", "你好")).keys == []
    assert (await sim.say("alice", "退订")).keys == ["core/optout_confirm"]  # still honoured
    assert (await sim.say("bob", "你好")).keys == ["greeter/hello"]
    await sim.restart()  # a restart must not make the bot talk over the human
    assert (await sim.say("alice", "你好")).keys == []
    await sim.advance(31 * 60)
    assert (await sim.say("alice", "你好")).keys == ["greeter/hello"]


async def test_transport_news_is_recorded_and_told_to_admins(sim: ChatSim) -> None:
    sim.transport.status_listener("reconnected", {"downtime_s": 120.0})
    told = await sim.advance(1)
    assert told.keys == ["core/reconnect_alert"] and told.sent[0].to == "admin"
    assert "中断了约 2 分钟" in told.texts[0]  # not "2.0 分钟"
    assert sim.app.store.sql.events(kind="transport.reconnected")


async def test_a_handler_may_wait_for_its_send_to_go_out(tmp_path: Path) -> None:
    outcomes: list[str] = []
    plugin = Plugin("waiter", persona=["greeter/hello"])

    @plugin.on_message()
    async def wait(event: Message, ctx: Context) -> None:
        sent = await ctx.reply("greeter/hello", name="x")
        outcomes.append((await sent).status)
        await ctx.reply("greeter/hello", name="y")

    sim = await ChatSim.create(tmp_path / "d", plugins=[plugin])
    said = await sim.say("alice", "hi")
    assert outcomes == ["sent"]
    assert said.keys == ["greeter/hello", "greeter/hello"]
    await sim.close()


async def test_job_crons_count_weekdays_like_crontab(tmp_path: Path) -> None:
    plugin, seen = recorder()
    # 2026-11-23 is a Monday: "* * * * 1" must fire today, not tomorrow.
    sim = await ChatSim.create(
        tmp_path / "d", plugins=[plugin], env={"JOB_PROBE_MORNING_CRON": "30 10 * * 1"}
    )
    await sim.advance(3600)
    assert seen == ["morning:10:30"]
    await sim.close()
