"""Parse and validate persona/calendar/calendar.toml into a Calendar.

    [[post]]                               [[launch]]
    id = "mon_product"                     id = "winter_tea"
    key = "calendar/weekly_product"        at = 2026-12-12T20:00:00     (or on = "双11" + time)
    cron = "30 9 * * 1"                    segment = "vip"
                                           [[launch.step]]
    [[post]]                               id = "teaser"
    id = "mid_autumn"                      offset = "T-3d"
    key = "calendar/mid_autumn"            time = "12:00"               (optional time of day)
    on = "中秋"                            key = "calendar/launch_teaser"
    time = "09:00"
    replaces = ["mon_product"]

Validation collects every problem (file, post id, field, what is expected) so an operator
fixes the file in one pass."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any

from plugins._calendar.dates import DateError, Holidays
from plugins._calendar.model import (
    CHANNELS,
    FALLBACKS,
    Anchor,
    Calendar,
    CalendarError,
    Entry,
    Link,
    Occurrence,
)
from plugins._core import cta
from pond import Problem, Segment, SegmentError, cron_trigger

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")
MAX_IMAGES = 9  # a Moments post holds at most nine pictures
BUILTIN_VARS = ("date", "holiday", "launch")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OFFSET_PART = re.compile(r"(\d+)([dhm])")
_ROOM_ID = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: an id, not a topic

_COMMON = {"title", "channel", "fallback", "rooms", "segment", "vars", "enabled", "reply"}
_MEDIA = {"images", "link"}
POST_FIELDS = frozenset(
    {"id", "key", "cron", "at", "on", "time", "offset", "replaces", "start", "end"}
    | _COMMON
    | _MEDIA
)
LAUNCH_FIELDS = frozenset({"id", "at", "on", "time", "step"} | _COMMON)
STEP_FIELDS = frozenset({"id", "key", "offset", "time", "replaces"} | _COMMON | _MEDIA)

KeyCheck = Callable[[Entry, dict[str, Any]], str | None]


def load_calendar(
    path: Path, holidays: Holidays, tz: tzinfo, check_key: KeyCheck | None = None
) -> Calendar:
    """Parse and validate; raises CalendarError listing every problem found.

    `check_key(entry, sample_variables)` returns a problem with the entry's persona key
    (unknown key, a variable the entry does not provide), or None."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalendarError([_say("missing", "{file}: file not found", file=path)]) from None
    except (OSError, UnicodeDecodeError) as error:
        unreadable = _say("unreadable", "{file}: cannot read: {error}", file=path, error=error)
        raise CalendarError([unreadable]) from error
    except tomllib.TOMLDecodeError as error:
        broken = _say("not_toml", "{file}: not valid TOML: {error}", file=path, error=error)
        raise CalendarError([broken]) from error
    parser = _Parser(path, holidays, tz)
    unknown = set(data) - {"post", "launch"}
    if unknown:
        parser.problem(
            _say("where_file", "file"),
            "",
            "unknown_tables",
            "unknown table(s) {tables}: use [[post]] and [[launch]]",
            tables=sorted(unknown),
        )
    for number, table in enumerate(_tables(parser, data, "post"), 1):
        parser.post(table, number)
    for number, table in enumerate(_tables(parser, data, "launch"), 1):
        parser.launch(table, number)
    parser.cross_check(check_key)
    if parser.problems:
        raise CalendarError(parser.problems)
    return Calendar(parser.entries, path)


def _tables(parser: _Parser, data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    tables = data.get(name, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        parser.problem(
            f"[[{name}]]", "", "not_tables", "write each {name} as a [[{name}]] table", name=name
        )
        return []
    return tables


class _Parser:
    def __init__(self, path: Path, holidays: Holidays, tz: tzinfo) -> None:
        self.path = path
        self.holidays = holidays
        self.tz = tz
        self.entries: dict[str, Entry] = {}
        self.problems: list[str] = []

    def problem(self, where: str, field_name: str, code: str, english: str, **values: Any) -> None:
        """One line naming file, post and field, in the operator's language: the message
        is the catalogue's `calendar.<code>` (persona/core/problems.toml)."""
        message = _say(code, english, **values)
        if field_name:
            line = _say(
                "line",
                "{file}: {where}: {field}: {message}",
                file=self.path,
                where=where,
                field=field_name,
                message=message,
            )
        else:
            line = _say(
                "line_whole",
                "{file}: {where}: {message}",
                file=self.path,
                where=where,
                message=message,
            )
        self.problems.append(line)

    # -- one table kind each ---------------------------------------------------------------
    def post(self, table: dict[str, Any], number: int) -> None:
        where, post_id = self._identify(
            table, _say("where_post_n", "post #{n}", n=number), "where_post"
        )
        self._unknown(table, POST_FIELDS, where)
        anchor = self._anchor(table, where, allow_cron=True)
        offset = self._offset(table, where, required=False)
        if "offset" in table and table.get("cron"):
            self.problem(
                where,
                "offset",
                "offset_with_cron",
                "not used with cron: write the cron for the real time",
            )
        entry_fields = self._common(table, where, {})
        key = self._key(table, where)
        media = self._media(table, where)
        bounds = (self._date(table, "start", where), self._date(table, "end", where))
        if bounds[0] and bounds[1] and bounds[1] < bounds[0]:
            self.problem(where, "end", "end_before_start", "is before start")
        if post_id is None or anchor is None or key is None or entry_fields is None:
            return
        self._add(
            Entry(
                id=post_id,
                key=key,
                anchor=anchor,
                offset=offset,
                start=bounds[0],
                end=bounds[1],
                replaces=self._replaces(table, where),
                **media,
                **entry_fields,
            ),
            where,
        )

    def launch(self, table: dict[str, Any], number: int) -> None:
        where, launch_id = self._identify(
            table, _say("where_launch_n", "launch #{n}", n=number), "where_launch"
        )
        self._unknown(table, LAUNCH_FIELDS, where)
        anchor = self._anchor(table, where, allow_cron=False)
        shared = self._common(table, where, {})
        steps = table.get("step", [])
        if not isinstance(steps, list) or not steps or not all(isinstance(s, dict) for s in steps):
            self.problem(where, "step", "no_steps", "add its steps as [[launch.step]] tables")
            return
        for index, step in enumerate(steps, 1):
            step_where, step_id = self._identify(
                step, _say("where_step_n", "{where} step #{n}", where=where, n=index), "where_step"
            )
            if launch_id is not None and step_id is not None:
                step_where = _say("where_post", "post {id}", id=f"{launch_id}.{step_id}")
            self._unknown(step, STEP_FIELDS, step_where)
            offset = self._offset(step, step_where, required=True)
            clock = self._time(step, step_where) if "time" in step else None
            key = self._key(step, step_where)
            media = self._media(step, step_where)
            fields = self._common(step, step_where, shared or {})
            if None in (launch_id, step_id, anchor, key, fields, shared):
                continue
            assert launch_id and step_id and anchor and key and fields is not None
            self._add(
                Entry(
                    id=f"{launch_id}.{step_id}",
                    key=key,
                    anchor=anchor,
                    offset=offset,
                    clock=clock,
                    replaces=self._replaces(step, step_where),
                    launch=launch_id,
                    launch_title=str(shared.get("title", "")) if shared else "",
                    **media,
                    **fields,
                ),
                step_where,
            )

    def cross_check(self, check_key: KeyCheck | None) -> None:
        for entry in self.entries.values():
            where = _say("where_post", "post {id}", id=entry.id)
            for other in entry.replaces:
                if other == entry.id or other not in self.entries:
                    self.problem(
                        where,
                        "replaces",
                        "replaces_unknown",
                        "{other!r} is not another post of this file",
                        other=other,
                    )
            if entry.channel in ("broadcast", "both") and not entry.has_targets:
                self.problem(
                    where,
                    "channel",
                    "channel_needs_targets",
                    "{channel!r} needs rooms or a segment",
                    channel=entry.channel,
                )
            if entry.fallback == "broadcast" and not entry.has_targets:
                self.problem(
                    where,
                    "fallback",
                    "fallback_needs_targets",
                    "'broadcast' needs rooms or a segment",
                )
            if check_key is not None:
                sample = Occurrence(entry, _SAMPLE_TIME, _SAMPLE_TIME).builtins()
                trouble = check_key(entry, {**sample, **entry.vars})
                if trouble:
                    self.problem(where, "key", "key_trouble", "{trouble}", trouble=trouble)

    # -- fields ----------------------------------------------------------------------------
    def _identify(self, table: dict[str, Any], fallback: str, kind: str) -> tuple[str, str | None]:
        value = table.get("id")
        if not isinstance(value, str) or not _ID.match(value):
            self.problem(
                fallback,
                "id",
                "bad_id",
                "got {value!r}: use 1-40 lowercase letters, digits, _ or - "
                "(operators type it to confirm a post)",
                value=value,
            )
            return fallback, None
        return _say(kind, kind.removeprefix("where_") + " {id}", id=value), value

    def _unknown(self, table: dict[str, Any], allowed: frozenset[str], where: str) -> None:
        for name in sorted(set(table) - allowed):
            self.problem(
                where,
                name,
                "unknown_field",
                "unknown field; expected one of {allowed}",
                allowed=sorted(allowed),
            )

    def _anchor(self, table: dict[str, Any], where: str, *, allow_cron: bool) -> Anchor | None:
        kinds = [k for k in (("cron", "at", "on") if allow_cron else ("at", "on")) if k in table]
        if len(kinds) != 1:
            choices = " / ".join(
                f"{k} =" for k in ("cron", "at", "on") if allow_cron or k != "cron"
            )
            self.problem(
                where, "when", "when_count", "needs exactly one of {choices}", choices=choices
            )
            return None
        kind = kinds[0]
        if kind != "on" and "time" in table:
            self.problem(
                where,
                "time",
                "time_without_on",
                "only with on = (the time is part of {kind})",
                kind=kind,
            )
            return None
        if kind == "cron":
            text = table["cron"]
            try:
                if not isinstance(text, str):
                    raise ValueError
                trigger = cron_trigger(text, self.tz)
            except ValueError:
                self.problem(
                    where,
                    "cron",
                    "bad_cron",
                    "got {value!r}: a five-field cron like '30 9 * * 1'",
                    value=text,
                )
                return None
            return Anchor(cron=text, trigger=trigger)
        if kind == "at":
            moment = self._datetime(table["at"], where)
            return Anchor(at=moment) if moment is not None else None
        name = table["on"]
        if not isinstance(name, str):
            self.problem(
                where, "on", "bad_on", "got {value!r}: a key date name or MM-DD", value=name
            )
            return None
        try:
            rule = self.holidays.resolve(name)
        except DateError as error:
            self.problem(where, "on", "date_trouble", "{trouble}", trouble=error)
            return None
        if "time" not in table:
            self.problem(where, "time", "time_needed", 'needed with on =, e.g. time = "09:00"')
            return None
        clock = self._time(table, where)
        return Anchor(rule=rule, clock=clock) if clock is not None else None

    def _datetime(self, value: object, where: str) -> datetime | None:
        moment: datetime | None = None
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                moment = None
        if moment is None:
            self.problem(
                where,
                "at",
                "bad_at",
                "got {value!r}: a date-time like 2026-12-12T20:00:00",
                value=value,
            )
            return None
        if moment.second or moment.microsecond:
            self.problem(where, "at", "whole_minutes", "use whole minutes")
            return None
        return moment.astimezone(self.tz) if moment.tzinfo else moment.replace(tzinfo=self.tz)

    def _time(self, table: dict[str, Any], where: str) -> time | None:
        value = table.get("time")
        clock: time | None = None
        if isinstance(value, time):
            clock = value
        elif isinstance(value, str):
            hours, sep, minutes = value.strip().partition(":")
            if sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2:
                try:
                    clock = time(int(hours), int(minutes))
                except ValueError:
                    clock = None
        if clock is None or clock.second or clock.microsecond:
            self.problem(
                where, "time", "bad_time", 'got {value!r}: a time of day like "09:00"', value=value
            )
            return None
        return clock

    def _date(self, table: dict[str, Any], name: str, where: str) -> date | None:
        if name not in table:
            return None
        value = table[name]
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.problem(where, name, "bad_date", "got {value!r}: a date like 2026-12-01", value=value)
        return None

    def _offset(self, table: dict[str, Any], where: str, *, required: bool) -> timedelta:
        if "offset" not in table:
            if required:
                self.problem(where, "offset", "offset_needed", "needed: T-3d, T-2h, T0, T+1d ...")
            return timedelta(0)
        value = table["offset"]
        try:
            if not isinstance(value, str):
                raise ValueError
            return parse_offset(value)
        except ValueError:
            self.problem(
                where,
                "offset",
                "bad_offset",
                "got {value!r}: like T-3d, T-2h30m, T0, T+1d",
                value=value,
            )
            return timedelta(0)

    def _key(self, table: dict[str, Any], where: str) -> str | None:
        key = table.get("key")
        if not isinstance(key, str) or not key.startswith("calendar/") or "/" in key[9:]:
            self.problem(
                where,
                "key",
                "bad_key",
                "got {value!r}: a persona key calendar/<name> (file persona/calendar/<name>.j2)",
                value=key,
            )
            return None
        return key

    def _common(
        self, table: dict[str, Any], where: str, inherited: dict[str, Any]
    ) -> dict[str, Any] | None:
        ok = True
        values: dict[str, Any] = dict(inherited)
        values.pop("vars", None)
        if "title" in table:
            if isinstance(table["title"], str):
                values["title"] = table["title"].strip()
            else:
                self.problem(where, "title", "title_not_text", "must be text")
                ok = False
        for name, choices in (("channel", CHANNELS), ("fallback", FALLBACKS)):
            if name in table:
                if table[name] in choices:
                    values[name] = table[name]
                else:
                    self.problem(
                        where,
                        name,
                        "bad_choice",
                        "got {value!r}: one of {choices}",
                        value=table[name],
                        choices=choices,
                    )
                    ok = False
        if "rooms" in table:
            rooms = table["rooms"]
            if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
                self.problem(where, "rooms", "rooms_not_list", "a list of room ids")
                ok = False
            else:
                bad = [r for r in rooms if not _ROOM_ID.match(r)]
                if bad:
                    self.problem(
                        where,
                        "rooms",
                        "bad_room",
                        "{value!r} is not a room id (ids look like 12345678@chatroom; "
                        "group names change, ids do not)",
                        value=bad[0],
                    )
                    ok = False
                values["rooms"] = tuple(dict.fromkeys(rooms))
        if "segment" in table:
            text = table["segment"]
            try:
                if not isinstance(text, str):
                    raise SegmentError("not_text", "must be text")
                Segment.parse(text)
                values["segment"] = text.strip()
            except SegmentError as error:
                self.problem(
                    where,
                    "segment",
                    "bad_segment",
                    "got {value!r}: {trouble}",
                    value=text,
                    trouble=error,
                )
                ok = False
        merged = dict(inherited.get("vars", {}))
        if "vars" in table:
            own = table["vars"]
            if not isinstance(own, dict):
                self.problem(where, "vars", "vars_not_table", 'a table like {{ product = "..." }}')
                ok = False
            else:
                for name in own:
                    if not _VAR.match(name) or name in BUILTIN_VARS:
                        if name in BUILTIN_VARS:
                            self.problem(where, f"vars.{name}", "var_reserved", "reserved")
                        else:
                            self.problem(where, f"vars.{name}", "bad_var", "not a variable name")
                        ok = False
                merged.update(own)
        values["vars"] = merged
        if "reply" in table:  # the copy's call to action; its answer key: runtime.check_key
            try:
                values["reply"] = cta.parse(table["reply"], lambda key: True)
            except cta.CtaError as error:
                self.problem(where, error.field, "reply_bad", "{detail}", detail=error.detail)
                ok = False
        if "enabled" in table:
            if isinstance(table["enabled"], bool):
                values["enabled"] = table["enabled"] and inherited.get("enabled", True)
            else:
                self.problem(where, "enabled", "not_bool", "true or false")
                ok = False
        return values if ok else None

    def _media(self, table: dict[str, Any], where: str) -> dict[str, Any]:
        media: dict[str, Any] = {}
        images = table.get("images", [])
        if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
            self.problem(where, "images", "images_not_list", "a list of image file paths")
            images = []
        if len(images) > MAX_IMAGES:
            self.problem(
                where,
                "images",
                "too_many_images",
                "{count} images: a post holds at most {most}",
                count=len(images),
                most=MAX_IMAGES,
            )
        paths = []
        for text in images:
            path = Path(text)
            path = path if path.is_absolute() else self.path.parent / path
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                self.problem(
                    where,
                    "images",
                    "image_kind",
                    "{value!r}: use {kinds}",
                    value=text,
                    kinds=IMAGE_SUFFIXES,
                )
            elif not path.is_file():
                self.problem(
                    where,
                    "images",
                    "image_missing",
                    "{value!r}: no such file ({path})",
                    value=text,
                    path=path,
                )
            else:
                paths.append(path)
        media["images"] = tuple(paths)
        if "link" in table:
            link = table["link"]
            url = link.get("url") if isinstance(link, dict) else None
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                self.problem(
                    where,
                    "link",
                    "bad_link",
                    'a table like {{ url = "https://...", title = "..." }}',
                )
            elif set(link) - {"url", "title", "description"}:
                self.problem(where, "link", "link_fields", "only url, title and description")
            elif images:
                self.problem(
                    where, "link", "link_and_images", "a post has images or a link, not both"
                )
            else:
                media["link"] = Link(
                    url, str(link.get("title", "")), str(link.get("description", ""))
                )
        return media

    def _replaces(self, table: dict[str, Any], where: str) -> tuple[str, ...]:
        value = table.get("replaces", [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(where, "replaces", "replaces_not_list", "a list of post ids")
            return ()
        return tuple(value)

    def _add(self, entry: Entry, where: str) -> None:
        if entry.id in self.entries:
            self.problem(where, "id", "id_twice", "{id!r} is used twice", id=entry.id)
            return
        self.entries[entry.id] = entry


_SAMPLE_TIME = datetime(2026, 1, 1, 9, 0)


def _say(code: str, english: str, **values: Any) -> str:
    """The catalogue's `calendar.<code>` text (persona/core/problems.toml)."""
    return str(Problem(f"calendar.{code}", english, **values))


def parse_offset(text: str) -> timedelta:
    """'T-3d', '-2h30m', 'T0', '+1d', '0' -> timedelta. Raises ValueError."""
    body = text.strip().removeprefix("T").removeprefix("t").strip()
    if body in ("", "0"):
        return timedelta(0)
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("+-")
    parts = _OFFSET_PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise ValueError(f"bad offset {text!r}")
    unit = {"d": 86400, "h": 3600, "m": 60}
    return timedelta(seconds=sign * sum(int(n) * unit[u] for n, u in parts))
