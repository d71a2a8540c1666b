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
import re
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

    english: str

    def __init__(self, code: str, english: str, /, **values: Any) -> None:
        self.code = code
        self.values = values
        # A problem inside another (a file's line wrapping what is wrong there) reads in
        # English in the English text, in Chinese in the Chinese one.
        self.english = _format(
            english, {k: v.english if isinstance(v, Problem) else v for k, v in values.items()}
        )
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


# tomllib's messages (Python 3.11) -> catalogue codes; the message is "<what> (at line L,
# column C)" or "<what> (at end of document)". Unknown ones keep tomllib's text as a detail.
_TOML_WHAT = (
    ("Cannot declare", "declared_twice"),
    ("Duplicate inline table key", "declared_twice"),
    ("Cannot overwrite a value", "declared_twice"),
    ("Cannot mutate immutable namespace", "declared_twice"),
    ("Cannot redefine namespace", "declared_twice"),
    ("Expected '=' after a key", "expected_equals"),
    ("Expected ']' at the end of a table", "unclosed_table"),
    ("Expected ']]' at the end of an array", "unclosed_table"),
    ("Expected newline or end of document", "expected_newline"),
    ("Unclosed array", "unclosed_array"),
    ("Unclosed inline table", "unclosed_inline"),
    ("Unterminated string", "unterminated_string"),
    ("Invalid value", "invalid_value"),
    ("Invalid date or datetime", "invalid_value"),
    ("Invalid initial character for a key part", "bad_key"),
    ("Invalid statement", "invalid_statement"),
    ("Illegal character", "illegal_character"),
    ("Found invalid character", "illegal_character"),
    ("Unescaped", "bad_escape"),
    ("Escaped character", "bad_escape"),
    ("Invalid hex value", "bad_escape"),
)


def toml_problem(error: Exception, text: str = "") -> Problem:
    """A `tomllib.TOMLDecodeError` as a Chinese problem naming the line (and column) and what
    is wrong there. `text` (the document) turns "at end of document" into its last line."""
    line, column, what = _toml_parts(error, text)
    if column is not None:
        return Problem(
            "toml.at",
            "not valid TOML at line {line}, column {column}: {what}",
            line=line,
            column=column,
            what=what,
        )
    if line is not None:
        return Problem(
            "toml.at_end", "not valid TOML at the end (line {line}): {what}", line=line, what=what
        )
    return Problem("toml.whole", "not valid TOML: {what}", what=what)


def toml_line(error: Exception, text: str = "") -> tuple[int | None, Problem]:
    """The line of a TOML error and a problem that names only the rest (for messages that
    already say "file, line N: ...")."""
    line, column, what = _toml_parts(error, text)
    if column is not None:
        return line, Problem(
            "toml.column", "not valid TOML near column {column}: {what}", column=column, what=what
        )
    if line is not None:
        return line, Problem("toml.end", "not valid TOML at the end of the file: {what}", what=what)
    return None, Problem("toml.whole", "not valid TOML: {what}", what=what)


def _toml_parts(error: Exception, text: str) -> tuple[int | None, int | None, Problem]:
    message = str(error)
    at = re.search(r"\(at line (\d+), column (\d+)\)", message)
    end = "(at end of document)" in message
    cut = at.start() if at else message.find("(at end of document)") if end else len(message)
    what_en = message[:cut].strip()
    code = next((c for prefix, c in _TOML_WHAT if what_en.startswith(prefix)), "")
    what = (
        Problem(f"toml.{code}", what_en)
        if code
        else Problem("toml.unknown", "{detail}", detail=what_en)
    )
    if at:
        return int(at[1]), int(at[2]), what
    if end:
        return text.rstrip("\n").count("\n") + 1, None, what
    return None, None, what
