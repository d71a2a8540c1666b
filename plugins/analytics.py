"""Operations analytics: keeps what the report needs that no other event carries, and lets
operators ask for the report in chat.

- Keywords: the words of customers' text messages (private and rooms), counted per day,
  room and channel with jieba (plugins/_analytics/keywords.py). Texts wait in memory for at most
  a minute and are never written anywhere; only the counts are. Operators are not counted.
  Word lists: persona/analytics/stopwords.txt and words.txt (read at start). jieba's
  dictionary (~70 MB) is loaded at the first flush, not at start-up.
- Order keywords: a customer's private message saying they ordered or paid (words in
  persona/analytics/orders.toml, none of the `exclude` words such as a question or a "not")
  records `analytics.order_keyword`, one of the conversion sources; at most once per
  contact per day.
- Room topics seen in messages (for room names in the report).
- The operator's 重新加载 re-reads orders.toml (a broken file keeps the last good words).
- Summary source "growth": a day's headline numbers (new friends by channel, active,
  converted) for the admin plugin's morning report, from the same code as the HTML report.
- Command 报表 [天数 | 开始日期 结束日期]: writes the report (HTML + CSV) under the data dir
  and answers with the headline numbers and the HTML file.

Config: ANALYTICS_KEYWORDS (count keywords; default on; off saves the dictionary's memory),
ANALYTICS_CONVERSION (which sources count as a conversion: purchase = the 成交 command,
keyword = order keywords, orders = imported order CSV), ANALYTICS_KEYWORD_DAYS (how long
daily keyword counts are kept)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from plugins._analytics import keywords
from plugins._analytics.build import report_for
from plugins._analytics.data import Source
from plugins._analytics.metrics import CONVERSION_SOURCES
from plugins._analytics.names import TOPIC_PREFIX, TOPICS_NAMESPACE
from pond import (
    BookChange,
    Command,
    Context,
    Media,
    MediaKind,
    Message,
    MessageType,
    Plugin,
    Problem,
    toml_problem,
)


@dataclass(frozen=True)
class AnalyticsConfig:
    keywords: bool = True
    conversion: tuple[str, ...] = CONVERSION_SOURCES
    keyword_days: int = 400


@dataclass
class OrderWords:
    words: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def match(self, text: str) -> bool:
        return any(w in text for w in self.words) and not any(x in text for x in self.exclude)


@dataclass
class AnalyticsState:
    counter: keywords.KeywordCounter | None
    orders: OrderWords
    topics: dict[str, str] = field(default_factory=dict)
    ordered: dict[str, str] = field(default_factory=dict)  # contact -> day of last order keyword
    channels: dict[str, str] = field(default_factory=dict)  # contact -> channel (a cache)
    no_channel: set[str] = field(default_factory=set)  # asked since the last flush: none


CHANNEL_CACHE = 50_000
REPORT_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "report.py"
REPORT_TIMEOUT_S = 300
TOP_CHANNELS = 5  # channels named in the morning summary's growth line
Ctx = Context[AnalyticsConfig, AnalyticsState]


def _order_words(path: Path) -> OrderWords:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return OrderWords()
    except tomllib.TOMLDecodeError as error:
        raise Problem(
            "files.invalid", "{path}: {problem}", path=path, problem=toml_problem(error)
        ) from error
    except OSError as error:
        raise Problem(
            "files.unreadable", "{path}: {error}", path=path, error=error.strerror or error
        ) from error
    lists = {}
    for key in ("words", "exclude"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise Problem(
                "files.word_list",
                "{path}: `{key}` must be a list of non-empty strings",
                path=path,
                key=key,
            )
        lists[key] = tuple(value)
    return OrderWords(**lists)


def build_state(ctx: Ctx) -> AnalyticsState:
    """A bad ANALYTICS_CONVERSION or a broken orders.toml stops start-up here, naming it."""
    unknown = set(ctx.config.conversion) - set(CONVERSION_SOURCES)
    if unknown:
        raise Problem(
            "startup.analytics_conversion",
            "ANALYTICS_CONVERSION: unknown {unknown}; use {known}",
            unknown=sorted(unknown),
            known=CONVERSION_SOURCES,
        )
    folder = ctx.settings.bot.persona_dir / "analytics"
    counter = None
    if ctx.config.keywords:
        segmenter = keywords.Segmenter(
            keywords.load_words(folder / "stopwords.txt"),
            keywords.load_words(folder / "words.txt"),
        )
        counter = keywords.KeywordCounter(ctx.sql.engine, ctx.sql.metadata, segmenter)
    st = AnalyticsState(counter, _order_words(folder / "orders.toml"))
    ctx.book.subscribe(lambda change: _forget(st, change))
    return st


plugin = Plugin(
    "analytics",
    persona=["analytics/report_ready", "analytics/report_error"],
    config=AnalyticsConfig,
    state=build_state,
    description="operations report: keywords, order keywords, report command",
)


@plugin.on_reload()
async def reload_order_words(ctx: Ctx) -> list[str]:
    try:
        ctx.state.orders = _order_words(ctx.settings.bot.persona_dir / "analytics" / "orders.toml")
    except ValueError as error:
        return [str(error)]  # the last good words stay
    return []


@plugin.on_message(priority=-200, block=False, listen_in_rooms=True)
async def observe(event: Message, ctx: Ctx) -> None:
    sender = event.sender
    if event.type is not MessageType.TEXT or ctx.admins.is_admin(sender.id):
        return
    st = ctx.state
    room = event.room
    if room is not None and room.topic and st.topics.get(room.id) != room.topic:
        st.topics[room.id] = room.topic
        ctx.sql.kv_set(TOPICS_NAMESPACE, TOPIC_PREFIX + room.id, room.topic)
    day = event.timestamp.astimezone(ctx.settings.bot.timezone).date().isoformat()
    if st.counter is not None:
        st.counter.add(day, room.id if room else "", channel_of(ctx, sender.id), event.text)
    if room is None and st.orders.match(event.text) and _first_order_today(ctx, sender.id, day):
        ctx.record("order_keyword", contact_id=sender.id, chat_id=event.chat_id)


def _first_order_today(ctx: Ctx, contact_id: str, day: str) -> bool:
    """Once per contact per day, across restarts (the day is kept in the plugin's store,
    which an erasure of the contact removes with the rest)."""
    st, key = ctx.state, f"ordered:{contact_id}"
    if st.ordered.get(contact_id, ctx.store.get(key)) == day:
        return False
    st.ordered[contact_id] = day
    ctx.store.set(key, day)
    return True


def channel_of(ctx: Ctx, contact_id: str) -> str:
    """First-touch attribution never changes once set, so a known channel is cached. Room
    members without one (most of a group) are asked again only after the next flush: they
    may become a friend from a channel meanwhile, and a read per message is not needed."""
    st = ctx.state
    channel = st.channels.get(contact_id)
    if channel is None:
        if contact_id in st.no_channel:
            return ""
        channel = ctx.book.channel(contact_id)
        if not channel:
            st.no_channel.add(contact_id)
        else:
            if len(st.channels) >= CHANNEL_CACHE:
                st.channels.clear()
            st.channels[contact_id] = channel
    return channel


def _forget(st: AnalyticsState, change: BookChange) -> None:
    # Any change (a new friend is tagged with their channel on acceptance) may bring a channel.
    st.no_channel.discard(change.contact_id)
    if change.kind == "deleted":
        st.channels.pop(change.contact_id, None)
        st.ordered.pop(change.contact_id, None)


@plugin.scheduled("* * * * *")
async def flush_keywords(ctx: Ctx) -> None:
    """The first flush also loads jieba's dictionary (~0.7 s, in a worker thread): not at
    start-up, so the first replies after a restart are not slowed by it."""
    st = ctx.state
    st.no_channel.clear()
    if st.counter is not None and st.counter.pending:
        await st.counter.flush()


@plugin.on_shutdown()
async def stop(ctx: Ctx) -> None:
    await flush_keywords(ctx)


@plugin.scheduled("30 4 * * *")
async def purge_keywords(ctx: Ctx) -> None:
    st = ctx.state
    if st.counter is not None:
        before = ctx.now.date() - timedelta(days=ctx.config.keyword_days)
        removed = st.counter.purge(before.isoformat())
        ctx.record("keywords_purged", before=before.isoformat(), rows=removed)


@plugin.command("analytics_report", keep_args=True)
async def report_command(cmd: Command, ctx: Ctx) -> None:
    args = cmd.args
    since = until = None
    if len(args) == 1 and args[0].isdigit():
        days = max(1, min(int(args[0]), 400))
        until = ctx.now.date().isoformat()
        since = (ctx.now.date() - timedelta(days=days - 1)).isoformat()
    elif len(args) in (1, 2):
        since, until = args[0], args[-1]
    elif args:
        await ctx.reply("analytics/report_error", error="usage")
        return
    st = ctx.state
    if st.counter is not None and st.counter.pending:
        await st.counter.flush()
    ctx.sql.flush()
    dates = [f"--from={since}", f"--to={until}"] if since and until else []
    result, error = await run_report(ctx, dates)
    if result is None:
        await ctx.reply("analytics/report_error", error=error, seconds=REPORT_TIMEOUT_S)
        return
    ctx.record("report", by=cmd.sender.id)
    html = Path(result.pop("html"))
    result.pop("csv", None)
    await ctx.reply(
        "analytics/report_ready",
        media=Media(MediaKind.FILE, path=str(html), title=html.name),
        path=str(html),
        **result,
    )


async def run_report(ctx: Ctx, args: list[str]) -> tuple[dict[str, Any] | None, str]:
    """scripts/report.py in its own process, on this bot's settings: a month of a large
    account is ~10 s of pure-Python work and a few hundred MB, which must neither hold this
    process's event loop (GIL) nor stay in its memory afterwards. (report, "") or (None, why)."""
    env = {**os.environ, **ctx.settings.raw, "POND_NO_VENV": "1"}
    command = [
        sys.executable,
        str(REPORT_SCRIPT),
        f"--data-dir={ctx.settings.bot.data_dir}",
        f"--env-file={os.devnull}",  # the settings come whole through the environment
        "--json",
        *args,
    ]
    proc = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), REPORT_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, "timeout"
    if proc.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return None, lines[-1] if lines else f"exit {proc.returncode}"
    try:
        result = json.loads(out.decode("utf-8").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, "report.py gave no result"
    return (result, "") if isinstance(result, dict) and "html" in result else (None, "no html")


@plugin.summary_source("growth")
async def growth(ctx: Ctx, day: date) -> dict[str, Any]:
    """The operations report's headline numbers for one day, so the operator's morning
    summary and the HTML report never disagree."""
    ctx.sql.flush()
    numbers = report_for(
        ctx.settings,
        Source(ctx.sql),
        since=day,
        until=day,
        conversion_sources=ctx.config.conversion,
    )
    channels: Counter[str] = Counter()
    for row in numbers.tables["new_friends"].rows:
        channels[row["channel_name"]] += row["n"]
    return {
        **numbers.headline,
        "channels": [{"name": k, "n": n} for k, n in channels.most_common(TOP_CHANNELS)],
    }
