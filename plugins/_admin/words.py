"""The fixed words operators type after a command (persona/admin/words.toml): "all",
the three answers to an unknown delivery, report days, duration units. They are
copy (Chinese, with English synonyms), so they live in a data file, never in code."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pond import Problem, parse_duration

LISTS = ("all", "sent", "resend", "skip", "today", "yesterday")
_UNITS = {"s", "m", "h", "d"}


class WordsError(Problem):
    """A problem with words.toml; its text is the catalogue's `admin_words.<code>`."""

    def __init__(self, code: str, english: str, **values: Any) -> None:
        super().__init__(f"admin_words.{code}", english, **values)


@dataclass(frozen=True)
class Words:
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)  # lowercased, in order
    units: dict[str, str] = field(default_factory=dict)  # word -> s/m/h/d

    def is_(self, name: str, word: str) -> bool:
        return word.strip().lower() in self.lists.get(name, ())

    def first(self, name: str) -> str:
        """The word shown to operators (the first one listed)."""
        return self.lists[name][0]

    def minutes(self, text: str) -> float | None:
        """'30' (minutes), '30m', '2h', '1h30m', '30分钟', '2小时' -> minutes; None if not a
        duration at all."""
        text = text.strip().lower()
        if not text or not text[0].isdigit():
            return None
        if text.replace(".", "", 1).isdigit():
            return float(text)
        for word in sorted(self.units, key=len, reverse=True):
            text = text.replace(word, self.units[word])
        try:
            seconds = parse_duration(text)
        except ValueError:
            return None
        return seconds / 60 if seconds > 0 else None


def load(path: Path) -> Words:
    """Read and check the file; any problem names the file, the key and the expected form."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WordsError(
            "missing", "{path}: missing (copy it from the project's persona/admin/)", path=path
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise WordsError("unreadable", "{path}: {error}", path=path, error=error) from error
    lists: dict[str, tuple[str, ...]] = {}
    for name in LISTS:
        value = data.get(name)
        if not isinstance(value, list) or not value:
            raise WordsError(
                "not_list",
                '{path}: {name}: expected a list of words, e.g. {name} = ["..."]',
                path=path,
                name=name,
            )
        if not all(isinstance(w, str) and w.strip() and " " not in w.strip() for w in value):
            raise WordsError(
                "bad_word",
                "{path}: {name}: each word must be non-empty, without spaces",
                path=path,
                name=name,
            )
        lists[name] = tuple(w.strip().lower() for w in value)
    units = data.get("units", {})
    if not isinstance(units, dict) or not all(
        isinstance(k, str) and k and v in _UNITS for k, v in units.items()
    ):
        raise WordsError(
            "bad_units", '{path}: [units]: expected word = "m" lines (s, m, h or d)', path=path
        )
    unknown = set(data) - {*LISTS, "units"}
    if unknown:
        raise WordsError(
            "unknown_keys", "{path}: unknown keys {keys}", path=path, keys=sorted(unknown)
        )
    return Words(lists, {k.lower(): str(v) for k, v in units.items()})
