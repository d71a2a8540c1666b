"""Points (积分): an operator adds points to a customer and looks a balance up."""

from dataclasses import dataclass
from pathlib import Path

from pond import Arg, Command, Context, Plugin


@dataclass(frozen=True)
class Config:
    max_add: int = 1000  # POINTS_MAX_ADD: the most one command may add


class Points:
    def __init__(self, ctx: Context) -> None:
        self.kv = ctx.store  # survives restarts

    def add(self, who: str, n: int) -> int:
        return self.kv.incr(f"points:{who}", n)

    def of(self, who: str) -> int:
        return self.kv.get_int(f"points:{who}")


FOLDER = Path(__file__).parent / "persona"  # its own templates; the brand's persona wins
KEYS = ["points/added", "points/balance"]
plugin = Plugin("points", config=Config, state=Points, persona=KEYS, persona_dir=FOLDER)
Ctx = Context[Config, Points]  # types ctx.config and ctx.state in the handlers


@plugin.command("add_points", args=[Arg("who"), Arg("n", int)], keep_args=True)
async def add_points(cmd: Command, ctx: Ctx) -> None:
    who, n = cmd.values["who"], max(1, min(cmd.values["n"], ctx.config.max_add))
    await ctx.reply("points/added", who=who, n=n, total=ctx.state.add(who, n))


@plugin.command("points", args=[Arg("who")], keep_args=True)
async def points(cmd: Command, ctx: Ctx) -> None:
    who = cmd.values["who"]
    await ctx.reply("points/balance", who=who, total=ctx.state.of(who))
