"""Validating a TOML data file with messages a copywriter can act on: every problem is a
DataError "file:line: where.key: what was expected", the line being the offending key's."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from plugins._auto_reply.match import normalize

SCOPES = ("private", "room_mention", "room")
_PERSONA_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9_-]*$")
_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column \d+\)")
_HEADER = re.compile(r"^\s*(\[\[?)\s*\"?([^\]\"]+?)\"?\s*\]\]?")


class DataError(Exception):
    def __init__(self, file: str, line: int | None, reason: str) -> None:
        super().__init__(file, line, reason)
        self.file = file
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.reason}"
            if self.line
            else f"{self.file}: {self.reason}"
        )


class Doc:
    """A TOML file under validation; `fail` points at the line of the offending key."""

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label
        try:
            self.text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
        except FileNotFoundError:
            raise DataError(label, None, "file not found") from None
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(label, None, f"cannot read as UTF-8 text: {error}") from None
        try:
            self.data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as error:
            message = str(error)
            found = _TOML_WHERE.search(message)
            line = int(found.group(1)) if found else None
            reason = _TOML_WHERE.sub("", message)
            raise DataError(label, line, f"not valid TOML: {reason}") from None
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

    def fail(self, table: str | None, index: int | None, key: str | None, reason: str) -> NoReturn:
        where = table or ""
        if index is not None:
            ident = self._array(table)[index].get("id")
            where = f"{table}[{index + 1}]" + (f" ({ident})" if isinstance(ident, str) else "")
        if key:
            where = f"{where}.{key}" if where else key
        raise DataError(self.label, self.line(table, index, key), f"{where}: {reason}")

    def _array(self, table: str | None) -> list[dict[str, Any]]:
        value = self.data.get(table or "", [])
        return value if isinstance(value, list) else []


class Table:
    """One table of a Doc with typed getters that fail with the expected form."""

    def __init__(
        self, doc: Doc, name: str | None, index: int | None, values: Mapping[str, Any]
    ) -> None:
        self.doc, self.name, self.index, self.values = doc, name, index, values

    def fail(self, key: str | None, reason: str) -> NoReturn:
        self.doc.fail(self.name, self.index, key, reason)

    def only(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for key in self.values:
            if key not in allowed:
                self.fail(key, f"unknown key; known keys: {', '.join(sorted(allowed))}")

    def has(self, key: str) -> bool:
        return key in self.values

    def text(self, key: str, default: str = "", *, required: bool = False) -> str:
        if key not in self.values:
            if required:
                self.fail(key, 'missing; expected text in double quotes, e.g. key = "..."')
            return default
        value = self.values[key]
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(key, f"expected text in double quotes, got {value!r}")
        return value.strip()

    def words(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(w, str) and w.strip() for w in value):
            self.fail(key, f'expected a list of words, e.g. ["word", "other words"], got {value!r}')
        words = tuple(dict.fromkeys(normalize(w) for w in value))
        if not all(words):
            self.fail(key, "a word is empty once @-mentions and spaces are removed")
        return words

    def ids(self, key: str) -> frozenset[str]:
        value = self.values.get(key, [])
        if not isinstance(value, list) or not all(isinstance(w, str) and w.strip() for w in value):
            self.fail(key, f'expected a list of ids, e.g. ["12345678@chatroom"], got {value!r}')
        return frozenset(w.strip() for w in value)

    def number(self, key: str, default: float, *, low: float = 0.0) -> float:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
            self.fail(key, f"expected a number >= {low:g}, got {value!r}")
        return float(value)

    def integer(self, key: str, default: int, *, low: int = -1000, high: int = 1000) -> int:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, f"expected a whole number from {low} to {high}, got {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {value!r}")
        return value

    def choice(self, key: str, default: str, options: Iterable[str]) -> str:
        options = tuple(options)
        value = self.values.get(key, default)
        if value not in options:
            listed = ", ".join(f'"{o}"' for o in options)
            self.fail(key, f"expected one of {listed}, got {value!r}")
        return str(value)

    def scope(self, key: str, default: frozenset[str]) -> frozenset[str]:
        if key not in self.values:
            return default
        value = self.values[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or any(v not in SCOPES for v in value):
            listed = ", ".join(f'"{s}"' for s in SCOPES)
            self.fail(key, f"expected a list of {listed}, got {value!r}")
        return frozenset(value)

    def patterns(self, key: str) -> tuple[re.Pattern[str], ...]:
        value = self.values.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            self.fail(key, f"expected a regular expression in single quotes, got {value!r}")
        compiled = []
        for pattern in value:
            try:
                compiled.append(re.compile(pattern, re.IGNORECASE))
            except re.error as error:
                self.fail(key, f"bad regular expression {pattern!r}: {error}")
        return tuple(compiled)

    def tags(self, key: str, *, prefix: str = "") -> tuple[str, ...]:
        value = self.values.get(key, [])
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            self.fail(key, f'expected a list of tags, e.g. ["oolong"], got {value!r}')
        for tag in value:
            full = prefix + tag
            if not tag or len(full) > 64 or any(ch.isspace() or ch in "()" for ch in tag):
                self.fail(key, f"tag {tag!r}: 1 to {64 - len(prefix)} characters, no spaces or ()")
        return tuple(value)

    def reply(self, key: str, default: str, has_key: Callable[[str], bool]) -> str:
        name = self.text(key, default, required=not default)
        if not _PERSONA_KEY.match(name):
            self.fail(key, f'expected a persona key like "auto_reply/price", got {name!r}')
        if not has_key(name):
            self.fail(key, f"persona key {name!r} has no template (persona/{name}.j2)")
        return name


def tables(doc: Doc, name: str) -> list[Table]:
    value = doc.data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        doc.fail(name, None, None, f"write each entry as a [[{name}]] table")
    return [Table(doc, name, i, t) for i, t in enumerate(value)]


def table(doc: Doc, name: str) -> Table:
    value = doc.data.get(name, {})
    if not isinstance(value, dict):
        doc.fail(None, None, name, f"expected a [{name}] table")
    return Table(doc, name, None, value)
