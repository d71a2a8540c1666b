"""The plugin API as a plugin author meets it: typed state, matches handed to handlers,
keys named by data, declared command arguments, plugins from outside the repository."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
from harness import ROOT

import plugins
from pond import Context, Message, Plugin, StartupError, filters


@dataclass
class Seen:
    words: list[str]


def _plugin() -> Plugin:
    plugin: Plugin = Plugin(
        "probe",
        persona=["greeter/hello"],
        persona_prefixes=["greeter/seen_"],
        state=lambda ctx: Seen([]),
    )

    def word_in(ctx: Context) -> filters.Filter:
        state: Seen = ctx.state  # built before filters are bound

        def check(event: object) -> object:
            text = getattr(event, "text", "")
            return next((w for w in ("tea", "cake") if w in text), None) or (
                bool(state.words) and "again" in text
            )

        return check

    @plugin.on_message(filters.configured(word_in))
    async def on_word(event: Message, ctx: Context[None, Seen]) -> None:
        ctx.state.words.append(str(ctx.matched))
        await ctx.reply("greeter/hello", name=event.sender.name)

    return plugin


async def test_a_filter_hands_what_it_matched_to_the_handler(sims) -> None:
    probe = _plugin()
    sim = await sims(plugins=[probe])

    said = await sim.say("alice", "some cake please")
    assert said.keys == ["greeter/hello"]
    said = await sim.say("alice", "again")
    assert said.keys == ["greeter/hello"]
    assert sim.state("probe").words == ["cake", "None"]


async def test_each_app_gets_its_own_state(sims) -> None:
    probe = _plugin()
    first, second = await sims(plugins=[probe]), await sims(plugins=[probe])

    await first.say("alice", "tea")
    assert first.state("probe").words == ["tea"]
    assert second.state("probe").words == []


async def test_keys_named_by_data_are_checked_against_the_declared_prefixes(sims) -> None:
    sim = await sims(plugins=[_plugin()])
    ctx = sim.app.context("probe")

    assert ctx.check_keys(["greeter/seen_before"]) == []
    problems = [str(p) for p in ctx.check_keys(["greeter/seen_nothing", "friends/greet"])]
    assert problems == [
        "文案「greeter/seen_nothing」没有对应的文件 persona/greeter/seen_nothing.j2",
        "插件「probe」用到了文案 friends/greet，但插件代码里没有声明这个文案"
        "（这是插件的程序问题，请告诉开发人员）",
    ]


async def test_a_state_that_cannot_be_built_stops_start_up_naming_the_plugin(sims) -> None:
    def broken(ctx: Context) -> None:
        raise ValueError("points.toml line 3")

    with pytest.raises(StartupError, match=r"「broken」插件没能启动：points.toml line 3"):
        await sims(plugins=[Plugin("broken", state=broken)])


def test_bot_plugins_takes_a_plugin_from_anywhere_and_says_what_is_wrong() -> None:
    (points,) = [p for p in plugins.load(["examples.points.plugin:plugin"]) if p.name != "core"]
    assert points.name == "points"
    with pytest.raises(StartupError, match=r"找不到模块 examples.nosuch"):
        plugins.load(["examples.nosuch:plugin"])
    with pytest.raises(StartupError, match=r"examples.points.plugin 里没有名为 nothing 的插件对象"):
        plugins.load(["examples.points.plugin:nothing"])
    with pytest.raises(StartupError, match=r"不认识的插件 nosuch，可用的有：admin"):
        plugins.load(["nosuch"])


def test_the_bot_checks_an_external_plugin_at_start(tmp_path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "BOT_DATA_DIR": str(tmp_path / "data"),
        "BOT_PLUGINS": "greeter,examples.points.plugin:plugin",
        "POND_NO_VENV": "1",
    }
    result = subprocess.run(
        [sys.executable, "bot.py", "--check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
