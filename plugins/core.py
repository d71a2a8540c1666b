"""Always on: opt-out (退订) and opt-in by meaning, and the operator alerts the kernel sends.

Events (private chats only; in rooms nobody opts out for the room):
- a wish to stop ("退订", "别发了", "不要再发了", "能不能别发了"...), or a yes right after we
  asked, priority 0, honoured even while a human has the chat: opt out, confirm once;
- a wish to subscribe again ("恢复订阅", "重新订阅"...): opt in, confirm, if opted out;
- a question about it ("怎么退订？"): how to opt out (or that they already are), and an
  unclear one ("太多了", "烦", "退订吗？"): "要退订吗？" once, the yes counts for 10 minutes.
  Both only when no human has the chat, and both let "不退订" / "我没说要退订" through.
The words are data (persona/core/optout.toml, re-read when saved; see plugins/_core/optout.py);
OUTBOX_OPTOUT_KEYWORDS / OUTBOX_OPTIN_KEYWORDS count as whole-message words too.
Persona: core/optout_confirm, core/optin_confirm, core/optout_howto, core/optout_ask, and the
alert keys below.
"""

from __future__ import annotations

from plugins._core import live as optout
from plugins._core.live import Live
from plugins._core.optout import Verdict
from pond import Command, Context, Event, Message, Plugin, filters

Ctx = Context[None, Live]
plugin: Plugin[None, Live] = Plugin(
    "core",
    state=optout.build,
    persona=[
        "core/optout_confirm",
        "core/optin_confirm",
        "core/optout_howto",
        "core/optout_ask",
        "core/breaker_alert",
        "core/cap_alert",
        "core/unknown_alert",
        "core/clock_alert",
        "core/template_alert",
        "core/job_alert",
        "core/login_alert",
        "core/logout_alert",
        "core/reconnect_alert",
        "core/backup_alert",
        "core/admin_bound",
        "core/admin_bound_alert",
        "core/admin_code_wrong",
        "core/admin_code_expired",
        "core/admin_code_locked",
        "core/admin_code_alert",
        "core/admin_help",
        "core/admin_help_one",
    ],
    description="opt-out/opt-in and operator alerts",
)


@plugin.on_startup()
async def load_words(ctx: Ctx) -> None:
    ctx.state.start(ctx.now.timestamp())


def _says(*wanted: Verdict, unless_opted_out: bool = False) -> filters.Configured:
    def make(ctx: Ctx) -> filters.Filter:
        found = ctx.state

        def check(event: Event) -> bool:
            if not isinstance(event, Message) or event.room is not None:
                return False
            verdict = found.verdict(event, ctx.now.timestamp())
            if verdict not in wanted:
                return False
            return not (unless_opted_out and ctx.outbox.ledger.is_opted_out(event.sender.id))

        return check

    return filters.configured(make)


@plugin.on_message(
    filters.private(),
    _says(Verdict.OPT_OUT),
    priority=0,
    when_paused=True,  # honoured even while a human is talking to the customer
)
async def opt_out(event: Message, ctx: Ctx) -> None:
    ctx.state.settle(event.sender.id)
    # Confirm once: a customer repeating 退订 should not get a reply each time.
    if ctx.outbox.opt_out(event.sender.id, source="keyword"):
        await ctx.reply("core/optout_confirm")


@plugin.on_message(filters.private(), _says(Verdict.OPT_IN), priority=0, when_paused=True)
async def opt_in(event: Message, ctx: Ctx) -> None:
    if ctx.outbox.opt_in(event.sender.id):
        await ctx.reply("core/optin_confirm")


@plugin.on_message(filters.private(), _says(Verdict.HOWTO), priority=1)
async def how_to_opt_out(event: Message, ctx: Ctx) -> None:
    opted_out = ctx.outbox.ledger.is_opted_out(event.sender.id)
    ctx.record("optout_howto", contact_id=event.sender.id, opted_out=opted_out)
    await ctx.reply("core/optout_howto", opted_out=opted_out)


@plugin.on_message(filters.private(), _says(Verdict.ASK, unless_opted_out=True), priority=1)
async def ask_to_opt_out(event: Message, ctx: Ctx) -> None:
    ctx.state.ask(event.sender.id, ctx.now.timestamp())
    ctx.record("optout_asked", contact_id=event.sender.id)
    await ctx.reply("core/optout_ask")


@plugin.command("help", keep_args=True)
async def help_(command: Command, ctx: Ctx) -> None:
    # Dozens of commands do not fit one message with their usage: the list is compact,
    # and "帮助 <command>" shows one command in full.
    commands = ctx.commands
    name = commands.resolve(command.args[0]) if command.args else None
    if name is not None:
        await ctx.reply("core/admin_help_one", command=commands.describe(name))
    else:
        await ctx.reply("core/admin_help", commands=commands.listing())
