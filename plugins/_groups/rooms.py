"""Per-room configuration, keyed by room id (persona/groups/rooms.toml by default).

    [defaults]                       # every room, unless the room says otherwise
    rules_keywords = ["..."]
    [defaults.moderation]
    banned_keywords = ["..."]

    [rooms."12345678@chatroom"]      # rooms not listed here are left alone
    name = "..."                     # shown to operators and in copy; ids identify
    invite_keywords = ["..."]
    [rooms."12345678@chatroom".moderation]
    flood_messages = 8

List keys that name people or banned things (admins, whitelist, notify, allowed_domains,
banned_keywords, banned_patterns) add up: [defaults] plus the room's own. Every other key in
a room replaces the default.

A problem in one room refuses that room only (naming the room id and the key); a problem in
[defaults] or in the TOML itself refuses the whole file. The caller keeps the last good
version of whatever was refused."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from pond import Problem as CodedProblem
from pond import cron_trigger

RULES = ("link", "qr_image", "contact_card", "mini_program", "banned_keyword", "flood")
ROLES = ("member", "admin", "owner")
QR_MODES = ("off", "new_members", "all")
_MAX_PATTERN = 300  # an operator's regex, not a program: keep it short


@dataclass(frozen=True)
class Moderation:
    enabled: bool = True
    links: bool = True
    allowed_domains: tuple[str, ...] = ()
    qr_images: str = "new_members"  # off | new_members | all (see moderation.py)
    new_member_hours: float = 24.0
    contact_cards: bool = True
    mini_programs: bool = True
    banned_keywords: tuple[str, ...] = ()
    banned_patterns: tuple[re.Pattern[str], ...] = ()
    flood_messages: int = 10  # 0 turns the flood rule off
    flood_seconds: float = 60.0
    warnings: int = 2  # warnings before removal: warn, final warning, remove
    instant_remove: tuple[str, ...] = ()  # rules that skip the warnings
    strike_hours: float = 168.0  # strikes older than this no longer count


@dataclass(frozen=True)
class RoomConfig:
    id: str
    name: str = ""
    welcome: bool = True
    welcome_cooldown_s: float = 300.0
    welcome_dm_rules: bool = False
    persona_layer: str = ""
    rules_key: str = "groups/rules"
    rules_keywords: tuple[str, ...] = ()
    rules_cron: str = ""
    rules_trigger: CronTrigger | None = field(default=None, compare=False, repr=False)
    rules_cooldown_s: float = 120.0
    invite_keywords: tuple[str, ...] = ()
    invite_order: int = 100
    member_limit: int = 480
    role: str = "member"  # the account's own role in the room: member | admin | owner
    admins: tuple[str, ...] = ()
    whitelist: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    dry_run: bool = False
    moderation: Moderation = field(default_factory=Moderation)

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def can_remove(self) -> bool:
        """WeChat lets only the owner and admins remove members."""
        return self.role in ("admin", "owner")

    def exempt(self, contact_id: str) -> bool:
        return contact_id in self.admins or contact_id in self.whitelist


def say(code: str, english: str, **values: Any) -> str:
    """The catalogue's `groups.<code>` text (persona/core/problems.toml)."""
    return str(CodedProblem(f"groups.{code}", english, **values))


@dataclass(frozen=True)
class Problem:
    room: str  # a room id, or "defaults" / "" for the file as a whole
    key: str
    reason: str  # already in the operator's language (say())

    def __str__(self) -> str:
        if not self.room:
            return self.reason
        if self.room == "defaults":
            where = say("where_defaults", "[defaults]")
        else:
            where = say("where_room", 'room "{room}"', room=self.room)
        if self.key:
            return say(
                "line", "{where}: {key}: {reason}", where=where, key=self.key, reason=self.reason
            )
        return say("line_whole", "{where}: {reason}", where=where, reason=self.reason)


@dataclass
class Parsed:
    rooms: dict[str, RoomConfig]  # the rooms that passed, in file order
    problems: list[Problem]
    fatal: bool  # the file itself or [defaults] is broken: nothing in it can be trusted


# Key -> kind. Kinds are checked by _value(); "union" lists add up with [defaults].
_ROOM_KEYS: dict[str, str] = {
    "name": "text",
    "welcome": "bool",
    "welcome_cooldown_s": "seconds",
    "welcome_dm_rules": "bool",
    "persona_layer": "layer",
    "rules_key": "key",
    "rules_keywords": "words",
    "rules_cron": "cron",
    "rules_cooldown_s": "seconds",
    "invite_keywords": "words",
    "invite_order": "int",
    "member_limit": "count",
    "role": "role",
    "admins": "ids",
    "whitelist": "ids",
    "notify": "ids",
    "dry_run": "bool",
}
_MOD_KEYS: dict[str, str] = {
    "enabled": "bool",
    "links": "bool",
    "allowed_domains": "domains",
    "qr_images": "qr",
    "new_member_hours": "hours",
    "contact_cards": "bool",
    "mini_programs": "bool",
    "banned_keywords": "words",
    "banned_patterns": "patterns",
    "flood_messages": "int",
    "flood_seconds": "positive",
    "warnings": "int",
    "instant_remove": "rules",
    "strike_hours": "positive",
}
_UNION = {"admins", "whitelist", "notify", "allowed_domains", "banned_keywords", "banned_patterns"}


class _Bad(Exception):
    def __init__(self, code: str, english: str, got: object, **values: Any) -> None:
        expected = say(f"expect_{code}", english, **values)
        super().__init__(
            say("bad_value", "expected {expected}, got {got!r}", expected=expected, got=got)
        )


class Checks:
    """What the parser cannot know alone: persona keys and layers, the time zone."""

    def __init__(
        self,
        tz: tzinfo,
        has_key: Callable[[str], bool] = lambda key: True,
        layer_problem: Callable[[str, str], str | None] = lambda layer, room: None,
    ) -> None:
        self.tz = tz
        self.has_key = has_key
        self.layer_problem = layer_problem


def _value(kind: str, raw: object, checks: Checks) -> Any:
    """One TOML value of one kind, or _Bad saying what was expected."""
    if kind == "bool":
        if not isinstance(raw, bool):
            raise _Bad("bool", "true or false", raw)
        return raw
    if kind in ("int", "count"):
        low = 1 if kind == "count" else 0
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < low:
            raise _Bad("whole", "a whole number >= {low}", raw, low=low)
        return raw
    if kind in ("seconds", "hours", "positive"):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _Bad("number", "a number", raw)
        if raw < 0 or (kind == "positive" and raw <= 0):
            if kind == "positive":
                raise _Bad("positive", "a number > 0", raw)
            raise _Bad("not_negative", "a number >= 0", raw)
        return float(raw)
    if kind in ("text", "layer", "key", "cron", "role", "qr"):
        if not isinstance(raw, str):
            raise _Bad("text", "a string in double quotes", raw)
        text = raw.strip()
        if kind == "role" and text not in ROLES:
            raise _Bad("role", "one of {choices}", raw, choices=ROLES)
        if kind == "qr" and text not in QR_MODES:
            raise _Bad("qr", "one of {choices}", raw, choices=QR_MODES)
        if kind == "key":
            if not re.fullmatch(r"groups/[A-Za-z0-9_-]+", text):
                raise _Bad("key", 'a persona key of this plugin, like "groups/rules"', raw)
            if not checks.has_key(text):
                english = "a persona key with a template file (persona/{key}.j2)"
                raise _Bad("key_file", english, raw, key=text)
        if kind == "cron" and text:
            try:
                return text, cron_trigger(text, checks.tz)
            except ValueError:
                raise _Bad("cron", 'a five-field cron like "0 20 * * 5", or ""', raw) from None
        return text
    # the list kinds
    if not isinstance(raw, list) or not all(isinstance(v, str) and v.strip() for v in raw):
        raise _Bad("list", 'a list of non-empty strings, like ["a", "b"]', raw)
    items = [v.strip() for v in raw]
    if kind == "rules":
        bad = [v for v in items if v not in RULES]
        if bad:
            raise _Bad("rules", "rule names among {rules}", bad[0], rules=RULES)
    if kind == "domains":
        items = [v.lower().removeprefix("www.") for v in items]
    if kind == "patterns":
        compiled = []
        for item in items:
            if len(item) > _MAX_PATTERN:
                raise _Bad(
                    "pattern_long",
                    "a regular expression of at most {most} characters",
                    item,
                    most=_MAX_PATTERN,
                )
            try:
                compiled.append(re.compile(item, re.IGNORECASE))
            except re.error as error:
                raise _Bad(
                    "pattern", "a valid regular expression ({error})", item, error=error
                ) from None
        return tuple(compiled)
    return tuple(dict.fromkeys(items))


def _table(
    table: Mapping[str, Any], room: str, checks: Checks, *, in_defaults: bool
) -> tuple[dict[str, Any], dict[str, Any], list[Problem]]:
    """Parse a room (or [defaults]) table: (room values, moderation values, problems)."""
    values: dict[str, Any] = {}
    moderation: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, raw in table.items():
        if key == "moderation":
            if not isinstance(raw, dict):
                not_table = say("moderation_table", "expected a table of moderation rules")
                problems.append(Problem(room, key, not_table))
                continue
            for mkey, mraw in raw.items():
                where = f"moderation.{mkey}"
                if mkey not in _MOD_KEYS:
                    known = list(_MOD_KEYS)
                    unknown = say("unknown_key", "unknown key (known: {known})", known=known)
                    problems.append(Problem(room, where, unknown))
                    continue
                try:
                    moderation[mkey] = _value(_MOD_KEYS[mkey], mraw, checks)
                except _Bad as bad:
                    problems.append(Problem(room, where, str(bad)))
            continue
        if key not in _ROOM_KEYS or (in_defaults and key == "name"):
            known = [*_ROOM_KEYS, "moderation"]
            unknown = say("unknown_key", "unknown key (known: {known})", known=known)
            problems.append(Problem(room, key, unknown))
            continue
        try:
            values[key] = _value(_ROOM_KEYS[key], raw, checks)
        except _Bad as bad:
            problems.append(Problem(room, key, str(bad)))
    return values, moderation, problems


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if key in _UNION and key in merged:
            merged[key] = tuple(dict.fromkeys([*merged[key], *value]))
        else:
            merged[key] = value
    return merged


def parse(text: str, checks: Checks, base: RoomConfig) -> Parsed:
    """Parse a whole rooms file. `base` carries the settings-level defaults (GROUPS_*)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        broken = say("not_toml", "not valid TOML: {error}", error=error)
        return Parsed({}, [Problem("", "", broken)], True)
    unknown = [k for k in data if k not in ("defaults", "rooms")]
    if unknown:
        reason = say(
            "unknown_table",
            'unknown table [{table}]; use [defaults] and [rooms."<id>"]',
            table=unknown[0],
        )
        return Parsed({}, [Problem("", "", reason)], True)
    defaults_table = data.get("defaults", {})
    rooms_table = data.get("rooms", {})
    if not isinstance(defaults_table, dict) or not isinstance(rooms_table, dict):
        not_tables = say("not_tables", "[defaults] and [rooms] must be tables")
        return Parsed({}, [Problem("", "", not_tables)], True)
    d_values, d_moderation, problems = _table(defaults_table, "defaults", checks, in_defaults=True)
    if problems:
        return Parsed({}, problems, True)
    base_values = {k: getattr(base, k) for k in _ROOM_KEYS}
    base_moderation = {k: getattr(base.moderation, k) for k in _MOD_KEYS}
    rooms: dict[str, RoomConfig] = {}
    for room_id, table in rooms_table.items():
        if not room_id.strip() or room_id != room_id.strip() or " " in room_id:
            problems.append(Problem(room_id, "", say("room_id", "a room id has no spaces")))
            continue
        if not isinstance(table, dict):
            not_table = say("room_table", 'expected a table: [rooms."{room}"]', room=room_id)
            problems.append(Problem(room_id, "", not_table))
            continue
        values, moderation, room_problems = _table(table, room_id, checks, in_defaults=False)
        merged = _merge(_merge(base_values, d_values), values)
        layer = merged.get("persona_layer", "")
        if layer and not room_problems:
            why = checks.layer_problem(layer, room_id)
            if why:
                room_problems.append(Problem(room_id, "persona_layer", why))
        if room_problems:
            problems.extend(room_problems)
            continue
        cron = merged.pop("rules_cron")
        cron_text, trigger = cron if isinstance(cron, tuple) else (cron, None)
        rules = Moderation(**_merge(_merge(base_moderation, d_moderation), moderation))
        rooms[room_id] = RoomConfig(
            id=room_id,
            rules_cron=cron_text,
            rules_trigger=trigger,
            moderation=rules,
            **merged,
        )
    return Parsed(rooms, problems, False)


@dataclass
class RoomsFile:
    """The rooms file as served: the last good configuration of every room."""

    path: Path
    checks: Checks
    base: RoomConfig
    rooms: dict[str, RoomConfig] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    fingerprint: str = ""

    def load(self) -> list[Problem]:
        """First load (start-up): any problem is returned and nothing is served."""
        text = self._read()
        parsed = parse(text, self.checks, self.base)
        self.fingerprint = _digest(text)
        self.problems = parsed.problems
        if not parsed.problems:
            self.rooms = parsed.rooms
        return parsed.problems

    def reload(self, *, force: bool = False) -> list[Problem] | None:
        """Pick up an edited file. None when nothing changed; else the problems (maybe [])
        after keeping the last good version of every refused room."""
        try:
            if not self.path.exists():
                raise FileNotFoundError("the file is missing")
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            # Moved or half-copied: keep serving every room rather than drop them all.
            if self.fingerprint == "unreadable" and not force:
                return None
            self.fingerprint = "unreadable"
            unreadable = say(
                "unreadable", "cannot read {path}: {error}", path=self.path, error=error
            )
            self.problems = [Problem("", "", unreadable)]
            return self.problems
        digest = _digest(text)
        if digest == self.fingerprint and not force:
            return None
        self.fingerprint = digest
        parsed = parse(text, self.checks, self.base)
        if parsed.fatal:
            self.problems = parsed.problems
            return parsed.problems
        refused = {p.room for p in parsed.problems}
        rooms = dict(parsed.rooms)
        for room_id in refused:
            if room_id in self.rooms:  # keep serving its last good configuration
                rooms[room_id] = self.rooms[room_id]
        self.rooms = rooms
        self.problems = parsed.problems
        return parsed.problems

    def _read(self) -> str:
        return self.path.read_text(encoding="utf-8") if self.path.exists() else ""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
