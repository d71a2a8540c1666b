"""Key dates: the named holidays of persona/calendar/holidays.toml resolved to Gregorian dates.

Lunar dates (春节, 端午, 七夕, 中秋 ...) and the 24 solar terms (清明, 冬至 ...) come from
lunar-python (see requirements.txt); solar dates (618, 双11) and "n-th weekday of a month"
(母亲节) are plain arithmetic. Holiday names are copy, so they live in the data file, never
in code."""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from lunar_python import Lunar, LunarMonth, Solar

from pond import Problem

_MONTH_DAY = re.compile(r"^(\d{1,2})-(\d{1,2}|last)$")
_NTH = re.compile(r"^(\d{1,2})-(-?\d)-([1-7])$")
KINDS = ("lunar", "term", "date", "nth_weekday")
# lunar-python supports far more; this keeps a typo like 20260 from spinning.
FIRST_YEAR, LAST_YEAR = 1901, 2099


class DateError(ValueError):
    """A key date that cannot be understood; the message names the file and the entry."""


def _problem(code: str, english: str, **values: Any) -> Problem:
    """The catalogue's `calendar.<code>` (persona/core/problems.toml); still a ValueError."""
    return Problem(f"calendar.{code}", english, **values)


def _say(code: str, english: str, **values: Any) -> str:
    return str(_problem(code, english, **values))


def solar_terms() -> tuple[str, ...]:
    """The 24 solar term names as lunar-python spells them (冬至 first)."""
    return tuple(str(name) for name in Lunar.JIE_QI)


@functools.lru_cache(maxsize=512)
def _lunar_to_solar(lunar_year: int, month: int, day: int) -> date | None:
    """Day 0 means the last day of the (non-leap) lunar month, e.g. 除夕 = 12-last."""
    try:
        if day == 0:
            day = int(LunarMonth.fromYm(lunar_year, month).getDayCount())
        solar = Lunar.fromYmd(lunar_year, month, day).getSolar()
    except Exception:  # lunar-python raises bare Exception for days a month lacks
        return None
    return date(int(solar.getYear()), int(solar.getMonth()), int(solar.getDay()))


@functools.lru_cache(maxsize=256)
def _terms_of(year: int) -> dict[str, date]:
    """Solar term name -> its date in Gregorian `year` (China time, as lunar-python)."""
    table: dict[str, Any] = Solar.fromYmd(year, 6, 1).getLunar().getJieQiTable()
    names = solar_terms()
    found: dict[str, date] = {}
    # The table's keys are lunar-python's JIE_QI_IN_USE: index i is the term JIE_QI[(i-1)%24]
    # (the terms of the neighbouring years carry romanised keys such as DONG_ZHI).
    for index, key in enumerate(Lunar.JIE_QI_IN_USE):
        solar = table.get(key)
        if solar is None or int(solar.getYear()) != year:
            continue
        found[names[(index - 1) % 24]] = date(
            int(solar.getYear()), int(solar.getMonth()), int(solar.getDay())
        )
    return found


@dataclass(frozen=True, slots=True)
class Rule:
    """How one key date recurs each year."""

    name: str
    kind: str  # lunar | term | date | nth_weekday
    month: int = 0
    day: int = 0  # lunar: 0 = last day of the month; nth_weekday: n (-1 = last)
    weekday: int = 0  # nth_weekday: 1 = Monday ... 7 = Sunday
    term: str = ""

    def dates(self, first_year: int, last_year: int) -> list[date]:
        """Every date of this rule in Gregorian years first_year..last_year, sorted."""
        first_year, last_year = max(first_year, FIRST_YEAR), min(last_year, LAST_YEAR)
        # A lunar year starts in late January or February: its 除夕 falls in the next
        # Gregorian year, so lunar rules also look at the year before.
        start = first_year - 1 if self.kind == "lunar" else first_year
        found = {self._in(year) for year in range(start, last_year + 1)}
        return sorted(d for d in found if d is not None and first_year <= d.year <= last_year)

    def _in(self, year: int) -> date | None:
        if self.kind == "lunar":
            return _lunar_to_solar(year, self.month, self.day)
        if self.kind == "term":
            return _terms_of(year).get(self.term)
        if self.kind == "date":
            try:
                return date(year, self.month, self.day)
            except ValueError:  # 02-29 outside leap years
                return None
        return _nth_weekday(year, self.month, self.day, self.weekday)


def _nth_weekday(year: int, month: int, n: int, weekday: int) -> date | None:
    if n > 0:
        first = date(year, month, 1)
        day = first + timedelta(days=(weekday - first.isoweekday()) % 7 + 7 * (n - 1))
    else:
        nxt = date(year + (month == 12), month % 12 + 1, 1)
        last = nxt - timedelta(days=1)
        day = last - timedelta(days=(last.isoweekday() - weekday) % 7)
    return day if day.month == month else None


def parse_month_day(text: str, *, lunar: bool) -> tuple[int, int]:
    """'08-15' -> (8, 15); lunar dates also take 'MM-last'. Raises ValueError."""
    match = _MONTH_DAY.match(text.strip())
    if not match:
        raise _problem("month_day", "expected MM-DD")
    month = int(match[1])
    if not 1 <= month <= 12:
        raise _problem("bad_month", "month must be 01..12")
    if match[2] == "last":
        if not lunar:
            raise _problem("last_not_lunar", "'last' is only for lunar dates")
        return month, 0
    day = int(match[2])
    if lunar and not 1 <= day <= 29:
        # A lunar month has 29 or 30 days: day 30 exists only some years.
        raise _problem(
            "bad_lunar_day", "lunar day must be 01..29, or 'last' for the month's last day"
        )
    if not lunar:
        try:
            date(2024, month, day)  # a leap year: 02-29 is a valid yearly date
        except ValueError:
            raise _problem(
                "no_such_day", "{month:02d}-{day:02d}: no such day", month=month, day=day
            ) from None
    return month, day


def solar_rule(name: str, text: str) -> Rule:
    month, day = parse_month_day(text, lunar=False)
    return Rule(name=name, kind="date", month=month, day=day)


class Holidays:
    """Named key dates (and their aliases) from one TOML file."""

    def __init__(self, rules: dict[str, Rule], path: Path | None = None) -> None:
        self.rules = rules
        self.path = path

    @classmethod
    def load(cls, path: Path) -> Holidays:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DateError(
                _say(
                    "holidays_missing", "{file}: file not found (it names the key dates)", file=path
                )
            ) from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise DateError(
                _say("holidays_unreadable", "{file}: {error}", file=path, error=error)
            ) from error
        table = data.get("holidays")
        if not isinstance(table, dict) or set(data) - {"holidays"}:
            raise DateError(
                _say(
                    "holidays_shape",
                    '{file}: expected one [holidays] table of name = {{ lunar = "08-15" }}',
                    file=path,
                )
            )
        rules: dict[str, Rule] = {}
        problems: list[str] = []
        for name, spec in table.items():
            try:
                rule, aliases = _parse_rule(name, spec)
            except ValueError as error:
                problems.append(
                    _say(
                        "holiday_line",
                        "{file}: holidays.{name}: {message}",
                        file=path,
                        name=name,
                        message=error,
                    )
                )
                continue
            for label in (name, *aliases):
                if label in rules:
                    twice = _say("holiday_twice", "name {label!r} is used twice", label=label)
                    problems.append(
                        _say(
                            "holiday_line",
                            "{file}: holidays.{name}: {message}",
                            file=path,
                            name=name,
                            message=twice,
                        )
                    )
                rules[label] = rule
        if problems:
            raise DateError("\n".join(problems))
        return cls(rules, path)

    def names(self) -> list[str]:
        return sorted(self.rules)

    def resolve(self, on: str) -> Rule:
        """A holiday name (or alias), a solar term name, or a yearly Gregorian date 'MM-DD'.
        Raises DateError naming the known names."""
        name = on.strip()
        rule = self.rules.get(name)
        if rule is not None:
            return rule
        if name in solar_terms():
            return Rule(name=name, kind="term", term=name)
        try:
            return solar_rule("", on)  # a bare date is no holiday: its name stays empty
        except ValueError:
            pass
        raise DateError(
            _say(
                "unknown_key_date",
                "unknown key date {on!r}: use a name defined in {file} ({known}), a solar term, "
                "or MM-DD",
                on=on,
                file=self.path or "holidays.toml",
                known=self.names(),
            )
        )


def _parse_rule(name: str, spec: object) -> tuple[Rule, Iterable[str]]:
    if not name.strip():
        raise _problem("holiday_empty_name", "empty name")
    if not isinstance(spec, dict):
        raise _problem("holiday_not_table", 'expected a table such as {{ lunar = "08-15" }}')
    unknown = set(spec) - {*KINDS, "aliases"}
    if unknown:
        raise _problem(
            "holiday_unknown_fields",
            "unknown field(s) {fields}; use one of {kinds}",
            fields=sorted(unknown),
            kinds=KINDS,
        )
    kinds = [k for k in KINDS if k in spec]
    if len(kinds) != 1:
        raise _problem("holiday_kind_count", "needs exactly one of {kinds}", kinds=KINDS)
    aliases = spec.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise _problem("holiday_aliases", "aliases must be a list of names")
    kind = kinds[0]
    value = spec[kind]
    if not isinstance(value, str):
        raise _problem("holiday_not_text", "{kind} must be a string", kind=kind)
    if kind == "lunar":
        try:
            month, day = parse_month_day(value, lunar=True)
        except ValueError as error:
            raise _problem(
                "holiday_bad_value",
                "{kind} = {value!r}: {trouble}",
                kind=kind,
                value=value,
                trouble=error,
            ) from None
        return Rule(name=name, kind="lunar", month=month, day=day), aliases
    if kind == "term":
        if value not in solar_terms():
            raise _problem(
                "holiday_bad_term", "term = {value!r}: not one of the 24 solar terms", value=value
            )
        return Rule(name=name, kind="term", term=value), aliases
    if kind == "date":
        try:
            return solar_rule(name, value), aliases
        except ValueError as error:
            raise _problem(
                "holiday_bad_value",
                "{kind} = {value!r}: {trouble}",
                kind=kind,
                value=value,
                trouble=error,
            ) from None
    match = _NTH.match(value.strip())
    n = int(match[2]) if match else 0
    if not match or not 1 <= int(match[1]) <= 12 or n == 0 or not -1 <= n <= 5:
        raise _problem(
            "holiday_bad_nth",
            "nth_weekday = {value!r}: expected MONTH-N-WEEKDAY, e.g. 05-2-7 for the second "
            "Sunday of May (N = 1..5, or -1 for the last; weekday 1 = Monday ... 7 = Sunday)",
            value=value,
        )
    return Rule(name=name, kind="nth_weekday", month=int(match[1]), day=n, weekday=int(match[3])), (
        aliases
    )
