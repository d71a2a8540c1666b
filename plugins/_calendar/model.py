"""The content calendar as data: posts, launches and their steps, expanded into occurrences
(post id, scheduled time). Parsing and validation of calendar.toml are in parse.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from plugins._calendar.dates import Rule

CHANNELS = ("moments", "broadcast", "both")
FALLBACKS = ("staff", "broadcast")


class CalendarError(ValueError):
    """The calendar file cannot be used; `problems` lists every bad field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Link:
    url: str
    title: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Anchor:
    """When an entry recurs: a cron, one date-time, or a yearly key date at a time of day."""

    cron: str = ""
    at: datetime | None = None
    rule: Rule | None = None
    clock: time | None = None  # the time of day of a yearly key date
    trigger: CronTrigger | None = field(default=None, compare=False)

    def times(self, lo: datetime, hi: datetime) -> Iterator[datetime]:
        """Anchor times in (lo, hi], in order."""
        if self.trigger is not None:
            previous: datetime | None = None
            moment = lo + timedelta(seconds=1)
            while True:
                nxt: datetime | None = self.trigger.get_next_fire_time(previous, moment)
                if nxt is None or nxt > hi:
                    return
                yield nxt
                previous, moment = nxt, nxt + timedelta(seconds=1)
        elif self.at is not None:
            if lo < self.at <= hi:
                yield self.at
        elif self.rule is not None and self.clock is not None:
            tz = lo.tzinfo
            for day in self.rule.dates(lo.year, hi.year):
                moment = datetime.combine(day, self.clock, tz)
                if lo < moment <= hi:
                    yield moment


@dataclass(frozen=True, slots=True)
class Entry:
    """One post of the calendar; a launch step is an entry with id "<launch>.<step>"."""

    id: str
    key: str
    anchor: Anchor
    title: str = ""
    channel: str = "moments"
    fallback: str = ""  # "" = the plugin's configured fallback
    rooms: tuple[str, ...] = ()
    segment: str = ""
    images: tuple[Path, ...] = ()
    link: Link | None = None
    vars: Mapping[str, Any] = field(default_factory=dict, compare=False)
    offset: timedelta = timedelta(0)
    clock: time | None = None  # a launch step's own time of day, after the offset
    replaces: tuple[str, ...] = ()
    start: date | None = None
    end: date | None = None
    launch: str = ""  # the launch id, for steps
    launch_title: str = ""
    enabled: bool = True
    reply: Mapping[str, Any] | None = field(default=None, compare=False)  # call to action

    @property
    def holiday(self) -> str:
        rule = self.anchor.rule
        return rule.name if rule is not None else ""

    @property
    def has_targets(self) -> bool:
        return bool(self.rooms or self.segment)

    def times(self, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
        """(scheduled time, anchor time) pairs with the scheduled time in (lo, hi]."""
        if not self.enabled:
            return []
        pad = timedelta(days=1) if self.clock is not None else timedelta(0)
        found = []
        for anchor in self.anchor.times(lo - self.offset - pad, hi - self.offset + pad):
            at = anchor + self.offset
            if self.clock is not None:
                at = datetime.combine(at.date(), self.clock, at.tzinfo)
            if not lo < at <= hi:
                continue
            if (self.start and at.date() < self.start) or (self.end and at.date() > self.end):
                continue
            found.append((at, anchor))
        return found

    def when_parts(self) -> dict[str, Any]:
        """When the entry recurs, as data for the operator's copy (calendar/_labels.j2 says
        it in Chinese): the anchor (cron / one time / a yearly key date) and, for a launch
        step, the offset from the launch and the step's own time of day."""
        anchor = self.anchor
        rule = anchor.rule
        seconds = int(self.offset.total_seconds())
        days, rest = divmod(abs(seconds), 86400)
        return {
            "cron": anchor.cron,
            "at": anchor.at.strftime("%Y-%m-%d %H:%M") if anchor.at else "",
            "rule": (
                {
                    "name": rule.name,
                    "kind": rule.kind,
                    "month": rule.month,
                    "day": rule.day,
                    "weekday": rule.weekday,
                    "term": rule.term,
                }
                if rule is not None
                else None
            ),
            "clock": f"{anchor.clock:%H:%M}" if anchor.clock else "",
            "launch": self.launch,
            "launch_title": self.launch_title,
            "offset": {
                "sign": (seconds > 0) - (seconds < 0),
                "days": days,
                "hours": rest // 3600,
                "minutes": rest % 3600 // 60,
            },
            "step_clock": f"{self.clock:%H:%M}" if self.clock else "",
        }


@dataclass(frozen=True, slots=True)
class Occurrence:
    entry: Entry
    at: datetime  # the scheduled time: with the post id, the identity of one publication
    anchor: datetime  # a launch step's T0 (the post's own time otherwise)
    replaced_by: str = ""

    @property
    def id(self) -> str:
        return occurrence_id(self.entry.id, self.at)

    def builtins(self) -> dict[str, Any]:
        """Variables every post template may use besides its own `vars`."""
        values: dict[str, Any] = {"date": _day(self.at), "holiday": self.entry.holiday}
        if self.entry.launch:
            values["launch"] = {**_day(self.anchor), "time": self.anchor.strftime("%H:%M")}
        return values


def occurrence_id(post_id: str, at: datetime) -> str:
    return f"{post_id}@{at:%Y-%m-%dT%H:%M}"


def _day(moment: datetime) -> dict[str, Any]:
    return {"month": moment.month, "day": moment.day, "weekday": moment.isoweekday()}


class Calendar:
    def __init__(self, entries: dict[str, Entry], path: Path) -> None:
        self.entries = entries
        self.path = path

    def occurrences(
        self, lo: datetime, hi: datetime, *, include_replaced: bool = False
    ) -> list[Occurrence]:
        """Occurrences scheduled in (lo, hi], in time order. An entry's `replaces` drops the
        listed posts on the dates it is published (a holiday post instead of the routine one)."""
        # Replacements work by calendar day, so look at whole days around the window.
        day_lo = datetime.combine(lo.date(), time(0), lo.tzinfo) - timedelta(seconds=1)
        day_hi = datetime.combine(hi.date() + timedelta(days=1), time(0), hi.tzinfo)
        found: list[Occurrence] = []
        replaced: dict[tuple[str, date], str] = {}
        for entry in self.entries.values():
            for at, anchor in entry.times(day_lo, day_hi):
                found.append(Occurrence(entry, at, anchor))
                for other in entry.replaces:
                    replaced.setdefault((other, at.date()), entry.id)
        result = []
        for occ in found:
            if not lo < occ.at <= hi:
                continue
            by = replaced.get((occ.entry.id, occ.at.date()), "")
            if by:
                if not include_replaced:
                    continue
                occ = Occurrence(occ.entry, occ.at, occ.anchor, replaced_by=by)
            result.append(occ)
        result.sort(key=lambda o: (o.at, o.entry.id))
        return result
