"""Always on: opt-out (退订) and opt-in, and the operator alerts the kernel sends.

Events: private messages that are exactly an opt-out or opt-in keyword (OUTBOX_OPTOUT_KEYWORDS,
OUTBOX_OPTIN_KEYWORDS); matching the whole message means "不要再发错地址了" is no opt-out.
Persona: core/optout_confirm, core/optin_confirm, and the alert keys below.
"""

from __future__ import annotations

from pond import Command, Context, Message, Plugin, filters

plugin = Plugin(
    "core",
    persona=[
        "core/optout_confirm",
        "core/optin_confirm",
        "core/breaker_alert",
        "core/cap_alert",
        "core/unknown_alert",
        "core/clock_alert",
        "core/template_alert",
        "core/job_alert",
        "core/login_alert",
        "core/logout_alert",
        "core/reconnect_alert",
        "core/admin_bound",
        "core/admin_help",
        "core/admin_help_one",
    ],
    description="opt-out/opt-in and operator alerts",
)


@plugin.on_message(
    filters.private(),
    filters.configured(lambda ctx: filters.exact(*ctx.settings.outbox.optout_keywords)),
    priority=0,
    when_paused=True,  # honoured even while a human is talking to the customer
)
async def opt_out(event: Message, ctx: Context) -> None:
    # Confirm once: a customer repeating 退订 should not get a reply each time.
    if ctx.outbox.opt_out(event.sender.id, source="keyword"):
        await ctx.reply("core/optout_confirm")


@plugin.on_message(
    filters.private(),
    filters.configured(lambda ctx: filters.exact(*ctx.settings.outbox.optin_keywords)),
    priority=0,
    when_paused=True,
)
async def opt_in(event: Message, ctx: Context) -> None:
    if ctx.outbox.opt_in(event.sender.id):
        await ctx.reply("core/optin_confirm")


@plugin.command("help")
async def help_(command: Command, ctx: Context) -> None:
    # Dozens of commands do not fit one message with their usage: the list is compact,
    # and "帮助 <command>" shows one command in full.
    commands = ctx.app.commands
    name = commands.resolve(command.args[0]) if command.args else None
    if name is not None:
        await ctx.reply("core/admin_help_one", command=commands.describe(name))
    else:
        await ctx.reply("core/admin_help", commands=commands.listing())
