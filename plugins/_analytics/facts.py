"""What the tables are made of: per-contact facts read once from the Source for a Scope
(who was added when and from which channel, who spoke when and where, who converted), and
the display names. The definitions are in metrics.py."""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from .data import NEW_FRIEND_KINDS, Source
from .scope import Scope

DAY = 86400.0
REPLY_WINDOW = DAY
OPTOUT_WINDOW = DAY
CONVERSION_WINDOW = 7 * DAY
ACTIVE_AFTER_ADD = 7 * DAY
AUTO_TAG_PREFIX = "friends:"
CONVERSION_SOURCES = ("purchase", "keyword", "orders")
CONVERSION_KINDS = {"purchase": "friends.purchase", "keyword": "analytics.order_keyword"}
UNKNOWN_CHANNEL = ""


@dataclass(frozen=True, slots=True)
class Names:
    rooms: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)

    def room(self, room_id: str) -> str:
        return self.rooms.get(room_id) or room_id

    def channel(self, code: str) -> str:
        if not code:
            return "未标注渠道"
        return self.channels.get(code) or code


@dataclass(frozen=True, slots=True)
class Conversion:
    contact_id: str
    ts: float
    source: str
    amount: float


def is_true(value: str) -> bool:
    return value.lower() in ("1", "true")


class Activity:
    """Inbound messages of the range, grouped the ways the metrics read them. With a channel
    filter only that channel's contacts count, in rooms too; with a room filter only those
    rooms' messages count as room messages."""

    def __init__(self, source: Source, scope: Scope, channels: Mapping[str, str]) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)  # contact -> message times
        self.private_times: dict[str, list[float]] = defaultdict(list)
        self.per_day: dict[date, set[str]] = defaultdict(set)
        self.heat: Counter[tuple[str, int]] = Counter()
        self.room_messages: Counter[str] = Counter()
        self.room_speakers: dict[str, set[str]] = defaultdict(set)
        self.private_messages = 0
        self.room_total = 0
        tz = scope.tz
        for e in source.scan(("in.message",), scope.start, scope.end):
            cid = e.contact_id
            if not cid or cid in scope.operators:
                continue
            if scope.channels and not scope.channel_ok(channels.get(cid) or UNKNOWN_CHANNEL):
                continue
            ts = e.ts.timestamp()
            local = e.ts.astimezone(tz)
            self.times[cid].append(ts)
            self.per_day[local.date()].add(cid)
            if e.room_id:
                if scope.room_ok(e.room_id):
                    self.room_total += 1
                    self.heat[e.room_id, local.hour] += 1
                    self.room_messages[e.room_id] += 1
                    self.room_speakers[e.room_id].add(cid)
            else:
                self.private_messages += 1
                self.private_times[cid].append(ts)
        for bucket in (self.times, self.private_times):
            for values in bucket.values():
                values.sort()

    @staticmethod
    def any_between(times: list[float] | None, start: float, end: float) -> bool:
        """Is there a time in (start, end]?"""
        if not times:
            return False
        i = bisect.bisect_right(times, start)
        return i < len(times) and times[i] <= end


def load_conversions(
    source: Source, scope: Scope, sources: Iterable[str]
) -> dict[str, list[Conversion]]:
    """Every conversion up to the end of the range (earlier ones make a repurchase)."""
    found: dict[str, list[Conversion]] = defaultdict(list)
    wanted = [s for s in sources if s in CONVERSION_KINDS]
    kinds = {CONVERSION_KINDS[s]: s for s in wanted}
    if kinds:
        for e in source.scan(tuple(kinds), None, scope.end, fields=("amount",)):
            if e.contact_id and e.contact_id not in scope.operators:
                amount = float(e.values[0]) if e.values[0] else 0.0
                found[e.contact_id].append(
                    Conversion(e.contact_id, e.ts.timestamp(), kinds[e.kind], amount)
                )
    if "orders" in sources:
        for cid, at, amount, _ in source.orders_between(scope.end):
            found[cid].append(Conversion(cid, at.timestamp(), "orders", amount))
    for items in found.values():
        items.sort(key=lambda c: c.ts)
    return found


def load_new_friends(
    source: Source, scope: Scope, channels: Mapping[str, str]
) -> dict[str, tuple[float, str]]:
    """contact -> (first add time in range, channel), filtered by channel."""
    added: dict[str, tuple[float, str]] = {}
    events = source.scan(NEW_FRIEND_KINDS, scope.start, scope.end, fields=("channel",))
    for e in sorted(events, key=lambda e: e.ts):
        cid = e.contact_id
        if not cid or cid in added or cid in scope.operators:
            continue
        channel = channels.get(cid) or e.values[0] or UNKNOWN_CHANNEL
        if scope.channel_ok(channel):
            added[cid] = (e.ts.timestamp(), channel)
    return added


def distinct_days(scope: Scope, items: Iterable[Conversion]) -> int:
    return len({scope.local_day(datetime.fromtimestamp(c.ts, UTC)) for c in items})


def day_label(day: date) -> str:
    return day.isoformat()


@dataclass(frozen=True)
class Facts:
    """Everything the tables share, read once per report."""

    source: Source
    scope: Scope
    names: Names
    channels: Mapping[str, str]  # contact -> first-touch channel
    activity: Activity
    conversions: Mapping[str, list[Conversion]]
    added: Mapping[str, tuple[float, str]]  # new friends in range: (add time, channel)

    @classmethod
    def read(
        cls, source: Source, scope: Scope, names: Names, conversion_sources: Iterable[str]
    ) -> Facts:
        channels = source.channels()
        return cls(
            source=source,
            scope=scope,
            names=names,
            channels=channels,
            activity=Activity(source, scope, channels),
            conversions=load_conversions(source, scope, conversion_sources),
            added=load_new_friends(source, scope, channels),
        )

    def channel_of(self, contact_id: str) -> str:
        return self.channels.get(contact_id) or UNKNOWN_CHANNEL

    def contact_ok(self, contact_id: str) -> bool:
        """A customer the report counts: not an operator, in the channel filter."""
        return (
            bool(contact_id)
            and contact_id not in self.scope.operators
            and self.scope.channel_ok(self.channel_of(contact_id))
        )

    def day(self, ts: float) -> date:
        return self.scope.local_day(datetime.fromtimestamp(ts, UTC))
