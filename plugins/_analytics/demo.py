"""A realistic month of a small tea shop's private traffic, written into a data dir so the
report can be tried right after set-up (scripts/demo_data.py) and tested at any scale.

Everything is written through the same tables and in the same event shapes the bot writes
(tests compare them with a live session's): the customer book, the event store, the
governor's counters and bulk journal, keyword counts and imported orders. Seeded: the same
arguments give the same data. Channel codes and room ids are the shipped sample persona's
(friends/channels.toml, groups/rooms.toml) plus two rooms seen only by topic."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pond import CustomerBook, Ledger, Store

from . import demo_referrals, keywords, orders
from .demo_month import (
    ACCEPTS_PER_DAY,
    CHANNELS,
    GIVEN,
    OPERATOR,
    ROOMS,
    SURNAMES,
    Contact,
    DemoResult,
    Month,
    WordCounts,
    Writer,
)
from .names import TOPIC_PREFIX, TOPICS_NAMESPACE

__all__ = ["OPERATOR", "DemoResult", "generate"]


def generate(
    store: Store,
    *,
    end: date,
    tz: ZoneInfo,
    days: int = 30,
    contacts: int = 3000,
    seed: int = 7,
    segmenter: keywords.Segmenter | None = None,
) -> DemoResult:
    """Fill `store` with `days` days ending on `end` (inclusive) for `contacts` contacts
    (most of them friends from before; new ones within the governor's daily accept cap)."""
    rng = random.Random(seed)
    book = CustomerBook(store.sql.engine, store.sql.metadata)
    ledger = Ledger(store.sql.engine, store.sql.metadata)
    order_table = orders.define_table(store.sql.metadata)
    store.sql.metadata.create_all(store.sql.engine)
    w = Writer(store)
    first = end - timedelta(days=days - 1)
    month = Month(
        rng,
        w,
        tz,
        [first + timedelta(days=i) for i in range(days)],
        order_table,
        WordCounts(segmenter),
    )
    people = _people(month, contacts)
    invited, inviters = demo_referrals.pick(rng, people)
    for room_id, topic, _ in ROOMS:
        if topic:
            store.sql.kv_set(TOPICS_NAMESPACE, TOPIC_PREFIX + room_id, topic)
    store.sql.kv_set("core", f"admin:{OPERATOR}", {"at": first.isoformat(), "name": "店长"})
    for c in people:
        if c.added is None and rng.random() < 0.3:  # members since before the month
            room_id = rng.choice([r for r, _, _ in ROOMS])
            c.rooms.append(room_id)
            month.sizes[room_id] += 1
    for c in people:
        if c.id in invited:
            demo_referrals.referred(month, c, invited[c.id])
            month.joins_and_tags(c)
        elif c.added is not None:
            month.friend_added(c)
            month.joins_and_tags(c)
        month.messages(c)
        month.outcomes(c)
    demo_referrals.room_joins(month, inviters, [r for r, _, _ in ROOMS])
    month.leaves()
    month.hourly()
    month.operator()
    month.campaigns(ledger, people)
    for (day, kind), n in month.sends.items():
        w.add(ledger.counters, {"day": day, "kind": kind, "n": n})
    month.words.write(store)
    _book(w, book, people, tz)
    w.flush()
    w.result.contacts = len(people)
    w.result.orders = w.result.kinds["orders"]
    return w.result


def _people(m: Month, contacts: int) -> list[Contact]:
    rng, month = m.rng, m.days
    people: list[Contact] = []
    # The governor accepts at most OUTBOX_CAP_ACCEPT_FRIEND (25) requests a day, so a real
    # month has at most that many new friends a day, whatever the size of the book.
    new = min(contacts // 3, len(month) * 20)
    per_day: Counter[date] = Counter()
    weights = []
    for day in month:
        weight = 1.5 if day.weekday() >= 5 else 1.0
        if day.month == 11 and day.day in (10, 11):
            weight = 4.0  # 双11: the live-room spike
        weights.append(weight)
    for i in range(contacts):
        cid = f"wxid_demo_{i:06d}"
        name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        channel = _pick(rng, CHANNELS)
        zeal = rng.betavariate(1.2, 3.0)
        if i < new:
            day = rng.choices(month, weights)[0]
            while per_day[day] >= ACCEPTS_PER_DAY:  # full: WeChat keeps the request a while
                day = month[(month.index(day) + 1) % len(month)]
            per_day[day] += 1
            if weights[month.index(day)] > 3:
                channel = "LIVE"
            people.append(Contact(cid, name, channel, m.at(day), zeal))
        else:
            people.append(Contact(cid, name, channel, None, zeal * 0.6))
    return people


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([k for k, _ in weighted], [w for _, w in weighted])[0]


def _book(w: Writer, book: CustomerBook, people: list[Contact], tz: ZoneInfo) -> None:
    first_seen_default = datetime(2026, 1, 1, tzinfo=tz).timestamp()
    for c in people:
        w.add(
            book.customers,
            {
                "id": c.id,
                "name": c.name,
                "alias": "",
                "channel": c.channel,
                "stage": c.stage,
                "first_seen": c.added or first_seen_default,
                "last_inbound": c.last_inbound,
                "last_outbound": None,
                "is_friend": c.is_friend,
                "notes": "",
                "consent": {"contact": {"how": "friend_request"}},
                "stage_at": None,
                "purged_at": None,
            },
        )
        tags = set(c.tags)
        auto = {f"channel:{c.channel}"} if c.channel else set()
        for tag in sorted(tags | auto):
            source = (
                "friends:channel"
                if tag in auto
                else ("admin" if tag == "purchased" else "auto_reply")
            )
            w.add(
                book.tags_table,
                {
                    "contact_id": c.id,
                    "tag": tag,
                    "added_at": c.added or first_seen_default,
                    "source": source,
                },
            )
