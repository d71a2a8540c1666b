"""Validating a TOML data file with messages a copywriter can act on: every problem is a
DataError "file:line: where.key: what was expected", the line being the offending key's."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from plugins._auto_reply.match import normalize
from pond import Problem, toml_line

SCOPES = ("private", "room_mention", "room")
_PERSONA_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9_-]*$")
_HEADER = re.compile(r"^\s*(\[\[?)\s*\"?([^\]\"]+?)\"?\s*\]\]?")


def say(code: str, english: str, /, **values: Any) -> Problem:
    """A problem of the auto-reply data files, Chinese in persona/core/problems.toml."""
    return Problem(f"auto_reply.{code}", english, **values)


@dataclass(frozen=True, slots=True)
class Keys:
    """Which persona keys the data may name: ones with a template (`exists`) that the
    plugin declared (`declared`: its own keys and prefixes; `allowed` says which, for the
    copywriter)."""

    exists: Callable[[str], bool]
    declared: Callable[[str], bool] = lambda key: True
    allowed: tuple[str, ...] = ()


class DataError(Problem):
    """`file:line: where.key: reason`; str() is the catalogue's Chinese, `.english` the
    developers' text."""

    def __init__(self, file: str, line: int | None, reason: Problem) -> None:
        self.file = file
        self.line = line
        self.reason = reason
        if line:
            super().__init__(
                "auto_reply.line", "{file}:{line}: {reason}", file=file, line=line, reason=reason
            )
        else:
            super().__init__("auto_reply.line_whole", "{file}: {reason}", file=file, reason=reason)


class Doc:
    """A TOML file under validation; `fail` points at the line of the offending key."""

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label
        try:
            self.text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
        except FileNotFoundError:
            raise DataError(label, None, say("missing", "file not found")) from None
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(
                label, None, say("unreadable", "cannot read as UTF-8 text: {error}", error=error)
            ) from None
        try:
            self.data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as error:
            line, problem = toml_line(error, self.text)
            raise DataError(label, line, problem) from None
        self.lines = self.text.splitlines()

    def line(self, table: str | None, index: int | None, key: str | None) -> int | None:
        """Line of `key` in [table] (or the index-th [[table]]); else of the header."""
        inside = table is None
        header: int | None = None
        count = -1
        for number, raw in enumerate(self.lines, 1):
            head = _HEADER.match(raw)
            if head:
                is_array = head.group(1) == "[["
                inside = False
                if head.group(2).strip() == table and is_array == (index is not None):
                    count += 1
                    inside = not is_array or count == index
                    if inside:
                        header = number
                continue
            if inside and key and re.match(rf'^\s*"?{re.escape(key)}"?\s*=', raw):
                return number
        return header

    def fail(
        self, table: str | None, index: int | None, key: str | None, reason: Problem
    ) -> NoReturn:
        where: Problem | str = f"[{table}]" if table else ""
        if index is not None:
            ident = self._array(table)[index].get("id")
            where = (
                say("where_item_id", "{table}[{n}] ({id})", table=table, n=index + 1, id=ident)
                if isinstance(ident, str)
                else say("where_item", "{table}[{n}]", table=table, n=index + 1)
            )
        if key and where:
            where = say("where_key", "{where}.{key}", where=where, key=key)
        elif key:
            where = key
        raise DataError(
            self.label,
            self.line(table, index, key),
            say("at", "{where}: {reason}", where=where, reason=reason) if where else reason,
        )

    def _array(self, table: str | None) -> list[dict[str, Any]]:
        value = self.data.get(table or "", [])
        return value if isinstance(value, list) else []


class Table:
    """One table of a Doc with typed getters that fail with the expected form."""

    def __init__(
        self, doc: Doc, name: str | None, index: int | None, values: Mapping[str, Any]
    ) -> None:
        self.doc, self.name, self.index, self.values = doc, name, index, values

    def fail(self, key: str | None, reason: Problem) -> NoReturn:
        self.doc.fail(self.name, self.index, key, reason)

    def only(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for key in self.values:
            if key not in allowed:
                self.fail(
                    key,
                    say("unknown_key", "unknown key; known keys: {known}", known=sorted(allowed)),
                )

    def has(self, key: str) -> bool:
        return key in self.values

    def text(self, key: str, default: str = "", *, required: bool = False) -> str:
        if key not in self.values:
            if required:
                self.fail(
                    key,
                    say(
                        "text_missing", 'missing; expected text in double quotes, e.g. key = "..."'
                    ),
                )
            return default
        value = self.values[key]
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(key, say("text", "expected text in double quotes, got {got!r}", got=value))
        return value.strip()

    def words(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(w, str) and w.strip() for w in value):
            self.fail(
                key,
                say(
                    "words",
                    'expected a list of words, e.g. ["word", "other words"], got {got!r}',
                    got=value,
                ),
            )
        words = tuple(dict.fromkeys(normalize(w) for w in value))
        if not all(words):
            self.fail(
                key, say("empty_word", "a word is empty once @-mentions and spaces are removed")
            )
        return words

    def ids(self, key: str) -> frozenset[str]:
        value = self.values.get(key, [])
        if not isinstance(value, list) or not all(isinstance(w, str) and w.strip() for w in value):
            self.fail(
                key,
                say(
                    "ids",
                    'expected a list of ids, e.g. ["12345678@chatroom"], got {got!r}',
                    got=value,
                ),
            )
        return frozenset(w.strip() for w in value)

    def number(self, key: str, default: float, *, low: float = 0.0) -> float:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
            self.fail(
                key,
                say("number", "expected a number >= {low}, got {got!r}", low=f"{low:g}", got=value),
            )
        return float(value)

    def integer(self, key: str, default: int, *, low: int = -1000, high: int = 1000) -> int:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(
                key,
                say(
                    "integer",
                    "expected a whole number from {low} to {high}, got {got!r}",
                    low=low,
                    high=high,
                    got=value,
                ),
            )
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, say("flag", "expected true or false, got {got!r}", got=value))
        return value

    def choice(self, key: str, default: str, options: Iterable[str]) -> str:
        options = tuple(options)
        value = self.values.get(key, default)
        if value not in options:
            self.fail(
                key,
                say("choice", "expected one of {options}, got {got!r}", options=options, got=value),
            )
        return str(value)

    def scope(self, key: str, default: frozenset[str]) -> frozenset[str]:
        if key not in self.values:
            return default
        value = self.values[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or any(v not in SCOPES for v in value):
            self.fail(
                key,
                say("scope", "expected a list of {scopes}, got {got!r}", scopes=SCOPES, got=value),
            )
        return frozenset(value)

    def patterns(self, key: str) -> tuple[re.Pattern[str], ...]:
        value = self.values.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            self.fail(
                key,
                say(
                    "patterns",
                    "expected a regular expression in single quotes, got {got!r}",
                    got=value,
                ),
            )
        compiled = []
        for pattern in value:
            try:
                compiled.append(re.compile(pattern, re.IGNORECASE))
            except re.error as error:
                self.fail(
                    key,
                    say(
                        "pattern",
                        "bad regular expression {pattern!r}: {error}",
                        pattern=pattern,
                        error=error,
                    ),
                )
        return tuple(compiled)

    def tags(self, key: str, *, prefix: str = "") -> tuple[str, ...]:
        value = self.values.get(key, [])
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            self.fail(
                key, say("tags", 'expected a list of tags, e.g. ["oolong"], got {got!r}', got=value)
            )
        for tag in value:
            full = prefix + tag
            if not tag or len(full) > 64 or any(ch.isspace() or ch in "()" for ch in tag):
                self.fail(
                    key,
                    say(
                        "tag",
                        "tag {tag!r}: 1 to {most} characters, no spaces or ()",
                        tag=tag,
                        most=64 - len(prefix),
                    ),
                )
        return tuple(value)

    def reply(self, key: str, default: str, keys: Keys) -> str:
        name = self.text(key, default, required=not default)
        if not _PERSONA_KEY.match(name):
            self.fail(
                key,
                say("key", 'expected a persona key like "auto_reply/price", got {got!r}', got=name),
            )
        if not keys.declared(name):
            self.fail(
                key,
                say(
                    "key_elsewhere",
                    "persona key {key!r} is not auto-reply copy: use one starting with {allowed}",
                    key=name,
                    allowed=keys.allowed,
                ),
            )
        if not keys.exists(name):
            self.fail(
                key,
                say(
                    "key_missing",
                    "persona key {key!r} has no template (persona/{key}.j2)",
                    key=name,
                ),
            )
        return name


def tables(doc: Doc, name: str) -> list[Table]:
    value = doc.data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        doc.fail(
            name, None, None, say("tables", "write each entry as a [[{name}]] table", name=name)
        )
    return [Table(doc, name, i, t) for i, t in enumerate(value)]


def table(doc: Doc, name: str) -> Table:
    value = doc.data.get(name, {})
    if not isinstance(value, dict):
        doc.fail(None, None, name, say("table", "expected a [{name}] table", name=name))
    return Table(doc, name, None, value)
