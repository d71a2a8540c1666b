"""Sample plugin: greets a customer who says hello, and remembers how often they did.

It shows the whole path: event -> filter -> store -> persona -> reply (README: 10 minutes).
Events: private messages containing a trigger word from persona/greeter/triggers.toml.
Persona: greeter/hello (first time), greeter/seen_before (name, count).
Config: GREETER_REMEMBER (count returning customers; default on).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from pond import Context, Message, Plugin, Problem, filters, toml_problem


@dataclass(frozen=True)
class GreeterConfig:
    remember: bool = True


Ctx = Context[GreeterConfig, None]
plugin: Plugin[GreeterConfig, None] = Plugin(
    "greeter",
    persona=["greeter/hello", "greeter/seen_before"],
    config=GreeterConfig,
    description="sample: greet and remember",
)


def trigger_filter(ctx: Ctx) -> filters.Filter:
    # Trigger words are copy, so they live beside the copy, editable by copywriters.
    path = ctx.settings.bot.persona_dir / "greeter" / "triggers.toml"
    try:
        words = tomllib.loads(path.read_text(encoding="utf-8"))["words"]
    except tomllib.TOMLDecodeError as error:
        raise Problem(
            "files.invalid", "{path}: {problem}", path=path, problem=toml_problem(error)
        ) from error
    except (OSError, KeyError) as error:
        raise Problem(
            "files.needs_words", "{path}: needs `words = [...]` ({error})", path=path, error=error
        ) from error
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise Problem("files.words_list", "{path}: `words` must be a list of strings", path=path)
    return filters.keyword(*words)


@plugin.on_message(filters.private(), filters.configured(trigger_filter))
async def hello(event: Message, ctx: Ctx) -> None:
    key = f"greetings:{event.sender.id}"
    seen = ctx.store.get(key, 0)
    count = (seen if isinstance(seen, int) else 0) + 1
    if ctx.config.remember:
        ctx.store.set(key, count)
    ctx.record("greeted", contact_id=event.sender.id, count=count)
    if count == 1 or not ctx.config.remember:
        await ctx.reply("greeter/hello", name=event.sender.display)
    else:
        await ctx.reply("greeter/seen_before", name=event.sender.display, count=count)
