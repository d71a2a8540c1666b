"""Time as a dependency: the real clock in production, a fake one in tests and the
console simulator, so pacing and quiet hours are tested without real sleeps."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

from pond.problems import Problem


class Clock(Protocol):
    """`now()` is the wall clock: calendars, quiet hours, day boundaries. `monotonic()` never
    jumps: pacing (gaps, buckets, pauses) runs on it, so an NTP step or a VM resume can
    neither stall the outbox nor release a burst."""

    tz: tzinfo

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def __init__(self, tz: tzinfo | None = None) -> None:
        self.tz = tz or ZoneInfo("Asia/Shanghai")

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """Virtual time: sleep() moves the clock forward instead of waiting.

    There is one worker that sleeps (the outbox), so advancing on sleep keeps a
    faithful order of actions; `slept` records every pause for tests."""

    def __init__(self, start: datetime | None = None, tz: tzinfo | None = None) -> None:
        self.tz = tz or ZoneInfo("Asia/Shanghai")
        self._now = (start or datetime(2026, 11, 23, 10, 0, 0)).replace(tzinfo=self.tz)
        self.slept: list[float] = []
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += max(0.0, seconds)

    def set(self, moment: datetime) -> None:
        """Move time to `moment`: real time passes (forward only) on both clocks."""
        moment = moment if moment.tzinfo else moment.replace(tzinfo=self.tz)
        self._mono += max(0.0, (moment - self._now).total_seconds())
        self._now = moment

    def step_wall(self, seconds: float) -> None:
        """An NTP correction or VM resume: the wall clock jumps, no real time passes."""
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.slept.append(seconds)
            self.advance(seconds)
        await asyncio.sleep(0)


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '2h', '1d', '1h30m' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    if not text:
        raise Problem("duration.empty", "empty duration")
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):  # "nan", "inf": no moment is that far away
            raise Problem(
                "duration.not_finite", "bad duration {text!r}: not a finite number", text=text
            )
        return value
    total, number = 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total += float(number) * units[ch]
            number = ""
        else:
            raise Problem(
                "duration.bad", "bad duration {text!r} (use e.g. 90s, 15m, 2h, 1d)", text=text
            )
    if number:
        raise Problem(
            "duration.no_unit",
            "bad duration {text!r}: a number without a unit at the end",
            text=text,
        )
    return total
