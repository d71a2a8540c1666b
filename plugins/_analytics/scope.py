"""What a report covers: a date range in the bot's timezone, optional room and channel
filters, and the operators whose own chats are left out of every number.

Filters are given by id or by the name operators know (room name from groups/rooms.toml or
the topic last seen, channel name from friends/channels.toml); an unknown one is an error
that lists what is known, never an empty report that looks like a bad month."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_DAYS = 400
DEFAULT_DAYS = 30


class ReportError(ValueError):
    """A bad report request (date range, filter): the message is for the operator."""


@dataclass(frozen=True)
class Scope:
    since: date  # first day, inclusive
    until: date  # last day, inclusive
    tz: ZoneInfo
    rooms: frozenset[str] = frozenset()  # room ids; empty: every room
    channels: frozenset[str] = frozenset()  # channel codes; empty: every channel
    operators: frozenset[str] = frozenset()

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time(0), self.tz).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """Exclusive: midnight after the last day."""
        return datetime.combine(self.until + timedelta(days=1), time(0), self.tz).astimezone(UTC)

    @property
    def days(self) -> list[date]:
        return [self.since + timedelta(days=i) for i in range((self.until - self.since).days + 1)]

    def local_day(self, ts: datetime) -> date:
        return ts.astimezone(self.tz).date()

    def room_ok(self, room_id: str) -> bool:
        return not self.rooms or room_id in self.rooms

    def channel_ok(self, channel: str) -> bool:
        return not self.channels or channel in self.channels


def parse_day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ReportError(
            f"{what}「{text}」不是有效日期，请写成 YYYY-MM-DD，例如 2026-11-01"
        ) from None


def date_range(since: str | None, until: str | None, today: date) -> tuple[date, date]:
    """Defaults: the last 30 days up to today; one end given alone keeps 30 days."""
    end = parse_day(until, "结束日期") if until else None
    start = parse_day(since, "开始日期") if since else None
    if end is None:
        end = today if start is None else min(today, start + timedelta(days=DEFAULT_DAYS - 1))
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise ReportError(f"开始日期 {start} 晚于结束日期 {end}")
    if (end - start).days + 1 > MAX_DAYS:
        raise ReportError(f"日期范围 {start} ~ {end} 超过 {MAX_DAYS} 天，请缩短范围")
    return start, end


def resolve(wanted: Iterable[str], known: Mapping[str, str], what: str) -> frozenset[str]:
    """Ids for the given ids or names. `known` maps id -> display name."""
    by_name = {name: key for key, name in known.items() if name}
    found: set[str] = set()
    for raw in wanted:
        for item in (part.strip() for part in raw.replace("，", ",").split(",")):
            if not item:
                continue
            if item in known:
                found.add(item)
            elif item in by_name:
                found.add(by_name[item])
            else:
                listing = "、".join(
                    f"{name}（{key}）" if name and name != key else key
                    for key, name in sorted(known.items())
                )
                raise ReportError(
                    f"不认识的{what}「{item}」。已知的{what}：{listing or '（还没有）'}"
                )
    return frozenset(found)
