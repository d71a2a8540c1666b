"""Operator-facing validation problems, one catalogue of Chinese messages.

A check that an operator's input can fail (a segment, a tag, a CSV cell, a calendar or
campaign file...) raises `Problem(code, english, **values)`. Its text is looked up by
code in the persona catalogue `persona/core/problems.toml` (copy, edited by copywriters like
every other message) and formatted with the values; `str(problem)` is that Chinese text,
so every place that shows an error to an operator (a command's answer, an alert, the
command line) shows Chinese without knowing about the catalogue. The English text is the
fallback (catalogue missing or broken, code not listed) and what developers read in
`problem.english`.

Why a module-level catalogue: problems are raised deep inside parsers that know nothing
of an App. The App points this module at its persona folder (`use`); the file is re-read
when it changes, so an edit applies without a restart."""

from __future__ import annotations

import logging
import os
import threading
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("pond.problems")

CATALOGUE = Path("core") / "problems.toml"  # inside the persona folder
LIST_JOINER = "\u3001"  # 、 between the items of a list value

_lock = threading.Lock()
# Until an App says where its persona is (tools, unit tests), the shipped one's catalogue.
_path: Path | None = Path(__file__).resolve().parent.parent / "persona" / CATALOGUE
_stamp: tuple[int, int] | None = None
_texts: dict[str, str] = {}


class Problem(ValueError):
    """`Problem("segment.ends_early", "segment {text!r} ends too early", text=..., pos=8)`.
    Subclasses (SegmentError, CalendarError...) keep their own catch sites working."""

    def __init__(self, code: str, english: str, /, **values: Any) -> None:
        self.code = code
        self.values = values
        self.english = _format(english, values)
        super().__init__(self.english)

    def __str__(self) -> str:
        text = lookup(self.code)
        return self.english if text is None else _format(text, self.values)


class _Values(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _show(value: Any) -> Any:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return value
    return LIST_JOINER.join(str(v) for v in value)


def _format(template: str, values: Mapping[str, Any]) -> str:
    try:
        return template.format_map(_Values({k: _show(v) for k, v in values.items()}))
    except (ValueError, IndexError, AttributeError, KeyError):
        return template  # a typo in the copy must never hide the problem itself


def use(persona_dir: Path) -> None:
    """Read the catalogue from this persona folder from now on."""
    global _path, _stamp
    with _lock:
        _path, _stamp = persona_dir / CATALOGUE, None


def lookup(code: str) -> str | None:
    with _lock:
        _refresh()
        return _texts.get(code)


def codes() -> dict[str, str]:
    with _lock:
        _refresh()
        return dict(_texts)


def load(path: Path) -> dict[str, str]:
    """code -> text from a catalogue file; raises OSError / tomllib.TOMLDecodeError."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    found: dict[str, str] = {}

    def walk(prefix: str, table: Mapping[str, Any]) -> None:
        for key, value in table.items():
            code = f"{prefix}.{key}" if prefix else key
            if isinstance(value, Mapping):
                walk(code, value)
            elif isinstance(value, str):
                found[code] = value.strip()

    walk("", data)
    return found


def _refresh() -> None:
    global _stamp, _texts
    if _path is None:
        return
    try:
        st = os.stat(_path)
    except OSError:
        if _stamp != (0, 0):
            log.warning("no problem catalogue at %s: operators see English problems", _path)
            _stamp, _texts = (0, 0), {}
        return
    stamp = (st.st_mtime_ns, st.st_size)
    if stamp == _stamp:
        return
    _stamp = stamp
    try:
        _texts = load(_path)
    except (OSError, tomllib.TOMLDecodeError) as error:
        # The last good catalogue keeps serving.
        log.error("problem catalogue %s not read: %s", _path, error)
