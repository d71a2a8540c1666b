"""The points plugin, as an operator uses it (loaded the way BOT_PLUGINS names it)."""

from harness import Sims

PLUGIN = "examples.points.plugin:plugin"


async def test_an_operator_adds_points_and_looks_them_up(sims: Sims) -> None:
    sim = await sims(plugins=[PLUGIN])

    said = await sim.say("admin", "加积分 alice 10")
    assert said.texts == ["已给 alice 加了 10 分，现在一共 10 分。"]
    said = await sim.say("admin", "加积分 alice 5")
    assert said.texts == ["已给 alice 加了 5 分，现在一共 15 分。"]
    said = await sim.say("admin", "查积分 alice")
    assert said.texts == ["alice 现在有 15 分。"]

    await sim.restart()
    said = await sim.say("admin", "查积分 alice")
    assert said.texts == ["alice 现在有 15 分。"]


async def test_wrong_arguments_get_the_usage(sims: Sims) -> None:
    sim = await sims(plugins=[PLUGIN])

    said = await sim.say("admin", "加积分 alice")
    assert said.texts == ["加积分：少了参数。\n用法：加积分 <客户id> <分数>"]
    said = await sim.say("admin", "加积分 alice 十")
    assert said.texts == ["加积分：「十」不是数字。\n用法：加积分 <客户id> <分数>"]
    said = await sim.say("admin", "查积分 alice bob")
    assert said.texts == ["查积分：多了参数「bob」。\n用法：查积分 <客户id>"]
    assert sim.state("points").of("alice") == 0


async def test_a_customer_cannot_use_the_commands(sims: Sims) -> None:
    sim = await sims(plugins=[PLUGIN])

    said = await sim.say("alice", "加积分 alice 1000")
    assert "points/added" not in said.keys
    assert sim.state("points").of("alice") == 0


async def test_the_config_caps_one_addition(sims: Sims) -> None:
    sim = await sims(plugins=[PLUGIN], env={"POINTS_MAX_ADD": "50"})

    said = await sim.say("admin", "加积分 alice 1000")
    assert said.texts == ["已给 alice 加了 50 分，现在一共 50 分。"]


async def test_the_brand_can_reword_the_plugin_copy(sims: Sims) -> None:
    reworded = '{#\nwho = "alice"\ntotal = 3\n#}\n{{ who }}：{{ total }} 积分'
    sim = await sims(plugins=[PLUGIN], persona={"points/balance": reworded})

    said = await sim.say("admin", "查积分 alice")
    assert said.texts == ["alice：0 积分"]
