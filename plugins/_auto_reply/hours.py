"""Business hours: a daily window (may cross midnight), open weekdays and closed dates, in
the bot's timezone (the clock's). A window crossing midnight belongs to the day it starts:
"20:00-02:00" on a Friday covers Saturday 01:00, even when Saturday is not an open day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

DAY = 24 * 60


@dataclass(frozen=True, slots=True)
class Hours:
    start: int = 0  # minutes after midnight
    end: int = DAY  # 1..1440; <= start means the window ends the next day
    days: frozenset[int] = frozenset(range(1, 8))  # ISO weekdays, Monday = 1
    closed: frozenset[date] = frozenset()

    def _open_day(self, day: date) -> bool:
        return day.isoweekday() in self.days and day not in self.closed

    def _windows(self, day: date, tz: tzinfo | None) -> tuple[datetime, datetime]:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        end_day = 0 if self.end > self.start else 1
        return (
            midnight + timedelta(minutes=self.start),
            midnight + timedelta(days=end_day, minutes=self.end),
        )

    def is_open(self, now: datetime) -> bool:
        today = now.date()
        for day in (today, today - timedelta(days=1)):
            if not self._open_day(day):
                continue
            start, end = self._windows(day, now.tzinfo)
            if start <= now < end:
                return True
        return False

    def next_open(self, now: datetime) -> datetime | None:
        """The moment the shop next opens (now when open); None if not within two weeks."""
        if self.is_open(now):
            return now
        for offset in range(15):
            day = now.date() + timedelta(days=offset)
            if self._open_day(day):
                start, _ = self._windows(day, now.tzinfo)
                if start > now:
                    return start
        return None


def parse_window(text: str) -> tuple[int, int]:
    """'09:00-21:00', '20:00-02:00', '00:00-24:00' or 'always'. Raises ValueError."""
    text = text.strip().lower()
    if text == "always":
        return 0, DAY
    first, sep, second = text.partition("-")
    if not sep:
        raise ValueError(text)
    start, end = _minutes(first), _minutes(second)
    if start >= DAY or start == end or (start == 0 and end == 0):
        raise ValueError(text)
    return start, end


def _minutes(text: str) -> int:
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(text)
    value = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or value > DAY:
        raise ValueError(text)
    return value
