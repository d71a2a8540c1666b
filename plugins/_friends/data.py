"""The friends plugin's data files under persona/friends/ (copy and rules, not code):

    requests.toml   friend request rules: accept keywords, block list, review
    channels.toml   channel codes (poster, store, live stream) -> name, words, tags
    tags.toml       keyword rules: words in a customer's messages -> tags
    followups.toml  follow-up sequences (SOP): anchor event, steps, exit conditions
    csv.toml        CSV column names operators may use (Chinese headers)

Each file is validated as a whole; a problem names the file, the line and what is expected.
At start-up a bad file stops the bot; on reload a bad file keeps its last good version
while the other files move on."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from datetime import time
from pathlib import Path
from typing import Any

from plugins._friends.rules import (
    DEFAULT_COLUMNS,
    Channel,
    Channels,
    Columns,
    Followups,
    RequestRules,
    Sequence,
    Step,
    TagRule,
    TagRules,
    header_key,
)
from pond import Problem, Segment, SegmentError, check_tag, parse_duration, toml_line

# Tells whether a persona key named by a data file may be used (None) or what is wrong.
KeyCheck = Callable[[str], Problem | None]
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_SEQ = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
ANCHORS = ("friend_added", "purchased", "joined_room", "tagged")
SCOPES = ("private", "rooms", "all")


def _say(code: str, english: str, /, **values: Any) -> Problem:
    return Problem(f"friends.{code}", english, **values)


class DataError(Problem):
    """`file:line: reason`; str() is the catalogue's Chinese, `.english` the developers'."""

    def __init__(self, file: str, line: int | None, reason: Problem) -> None:
        self.file = file
        self.line = line
        self.reason = reason
        if line:
            super().__init__(
                "friends.line", "{file}:{line}: {reason}", file=file, line=line, reason=reason
            )
        else:
            super().__init__("friends.line_whole", "{file}: {reason}", file=file, reason=reason)


# -- locating lines in TOML ------------------------------------------------------------------
def line_of(
    text: str, table: str | None = None, key: str | None = None, nth: int | None = None
) -> int | None:
    """Best-effort line of `key` in `[table]` (or the nth `[[table]]`), 1-based."""
    lines = text.split("\n")
    start = 0
    if table is not None:
        parts = table.split(".")
        body = r"\s*\.\s*".join(re.escape(p) for p in parts)
        header = re.compile(
            r"^\s*\[\[\s*" + body + r"\s*\]\]"
            if nth is not None
            else r"^\s*\[\s*" + body + r"\s*\]"
        )
        seen = -1
        found = None
        for i, line in enumerate(lines):
            if header.match(line):
                seen += 1
                if nth is None or seen == nth:
                    found = i
                    break
        if found is None:
            return None
        if key is None:
            return found + 1
        start = found + 1
    if key is None:
        return None
    pattern = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for j in range(start, len(lines)):
        if table is not None and lines[j].lstrip().startswith("["):
            break
        if pattern.match(lines[j]):
            return j + 1
    return None


class _Reader:
    """Validation helpers bound to one file's text, raising DataError with a line."""

    def __init__(self, label: str, text: str) -> None:
        self.label = label
        self.text = text

    def fail(
        self,
        reason: Problem,
        table: str | None = None,
        key: str | None = None,
        nth: int | None = None,
    ) -> DataError:
        line = line_of(self.text, table, key, nth)
        if line is None and key is not None:
            line = line_of(self.text, table, None, nth)
        return DataError(self.label, line, reason)

    def words(
        self, value: object, table: str | None, key: str, nth: int | None = None
    ) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(w, str) and w.strip() for w in value):
            raise self.fail(
                _say("words", '{key} must be a list of non-empty words, e.g. ["A", "B"]', key=key),
                table,
                key,
                nth,
            )
        return tuple(w.strip() for w in value)

    def tags(
        self, value: object, table: str | None, key: str, nth: int | None = None
    ) -> tuple[str, ...]:
        tags = self.words(value, table, key, nth)
        for tag in tags:
            try:
                check_tag(tag)
            except ValueError as error:
                raise self.fail(_about(key, error), table, key, nth) from None
        return tags

    def segment(
        self, value: object, table: str, key: str, nth: int | None = None
    ) -> Segment | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(
                _say("segment_text", "{key} must be a tag expression in quotes", key=key),
                table,
                key,
                nth,
            )
        try:
            return Segment.parse(value)
        except SegmentError as error:
            raise self.fail(_about(key, error), table, key, nth) from None

    def unknown(
        self,
        data: dict[str, Any],
        allowed: Iterable[str],
        table: str | None,
        nth: int | None = None,
    ) -> None:
        extra = sorted(set(data) - set(allowed))
        if extra:
            reason = (
                _say(
                    "unknown_key",
                    "unknown key {key!r} in [{table}]; expected one of: {allowed}",
                    key=extra[0],
                    table=table,
                    allowed=sorted(allowed),
                )
                if table
                else _say(
                    "unknown_key_top",
                    "unknown key {key!r} at the top level; expected one of: {allowed}",
                    key=extra[0],
                    allowed=sorted(allowed),
                )
            )
            raise self.fail(reason, table, extra[0], nth)


def _about(key: str, error: Exception) -> Problem:
    """A problem of a value (a tag, a segment, a duration) under the key it was read from."""
    detail = error if isinstance(error, Problem) else Problem("friends.detail", str(error))
    return _say("about_key", "{key}: {detail}", key=key, detail=detail)


def _toml(label: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line, problem = toml_line(error, text)
        raise DataError(label, line, problem) from None


# -- the parsers -----------------------------------------------------------------------------
def parse_requests(label: str, text: str) -> RequestRules:
    r = _Reader(label, text)
    data = _toml(label, text)
    r.unknown(data, ["accept", "block", "review"], None)
    for name in ("accept", "block", "review"):
        if not isinstance(data.get(name, {}), dict):
            raise r.fail(_say("table", "{name} must be a table: [{name}]", name=name), None, name)
    accept, block, review = data.get("accept", {}), data.get("block", {}), data.get("review", {})
    r.unknown(accept, ["keywords", "tags"], "accept")
    r.unknown(block, ["keywords", "ids"], "block")
    r.unknown(review, ["notify"], "review")
    notify = review.get("notify", True)
    if not isinstance(notify, bool):
        raise r.fail(_say("bool", "{key} must be true or false", key="notify"), "review", "notify")
    return RequestRules(
        accept_words=r.words(accept.get("keywords"), "accept", "keywords"),
        accept_tags=r.tags(accept.get("tags"), "accept", "tags"),
        block_words=r.words(block.get("keywords"), "block", "keywords"),
        block_ids=frozenset(r.words(block.get("ids"), "block", "ids")),
        notify=notify,
    )


def parse_channels(label: str, text: str) -> Channels:
    r = _Reader(label, text)
    data = _toml(label, text)
    items = []
    seen: dict[str, str] = {}
    for code, table in data.items():
        if not _CODE.match(code) or not isinstance(table, dict):
            raise r.fail(
                _say(
                    "channel_code",
                    "[{code}]: a channel is a table named by its code (letters, digits, - or _, "
                    "up to 32), e.g. [A1]",
                    code=code,
                ),
                code,
            )
        if code.lower() in seen:
            raise r.fail(
                _say(
                    "channel_twice",
                    "[{code}]: the same code as [{other}]",
                    code=code,
                    other=seen[code.lower()],
                ),
                code,
            )
        seen[code.lower()] = code
        r.unknown(table, ["name", "words", "tags"], code)
        name = table.get("name", "")
        if not isinstance(name, str):
            raise r.fail(_say("name_text", "name must be text in quotes"), code, "name")
        items.append(
            Channel(
                code=code,
                name=name,
                words=r.words(table.get("words"), code, "words"),
                tags=r.tags(table.get("tags"), code, "tags"),
            )
        )
    return Channels.of(items)


def parse_tags(label: str, text: str) -> TagRules:
    r = _Reader(label, text)
    data = _toml(label, text)
    r.unknown(data, ["rules"], None)
    rules_data = data.get("rules", [])
    if not isinstance(rules_data, list):
        raise r.fail(
            _say("rules_tables", "rules must be written as [[rules]] tables"), None, "rules"
        )
    rules = []
    for i, rule in enumerate(rules_data):
        r.unknown(rule, ["words", "tags", "scope"], "rules", i)
        words = r.words(rule.get("words"), "rules", "words", i)
        tags = r.tags(rule.get("tags"), "rules", "tags", i)
        if not words or not tags:
            raise r.fail(
                _say("rule_needs", "each [[rules]] needs words = [...] and tags = [...]"),
                "rules",
                None,
                i,
            )
        scope = rule.get("scope", "private")
        if scope not in SCOPES:
            raise r.fail(
                _say("scope", "scope must be one of {scopes}", scopes=SCOPES, got=scope),
                "rules",
                "scope",
                i,
            )
        rules.append(TagRule(words, tags, scope))
    return TagRules.of(rules)


def parse_followups(label: str, text: str, check_key: KeyCheck) -> Followups:
    r = _Reader(label, text)
    data = _toml(label, text)
    sequences: dict[str, Sequence] = {}
    for seq_id, table in data.items():
        if not _SEQ.match(seq_id) or not isinstance(table, dict):
            raise r.fail(
                _say(
                    "sequence_name",
                    "[{id}]: a sequence is a table named in lowercase letters, digits and _",
                    id=seq_id,
                ),
                seq_id,
            )
        r.unknown(table, ["anchor", "segment", "exit_on_reply", "exit", "reenter", "steps"], seq_id)
        anchor = table.get("anchor")
        if not isinstance(anchor, str) or not _anchor_ok(anchor):
            raise r.fail(
                _say(
                    "anchor",
                    "anchor must be friend_added, purchased, joined_room, "
                    "joined_room:<room id> or tagged:<tag>",
                ),
                seq_id,
                "anchor",
            )
        for flag in ("exit_on_reply", "reenter"):
            if not isinstance(table.get(flag, True), bool):
                raise r.fail(_say("bool", "{key} must be true or false", key=flag), seq_id, flag)
        steps_data = table.get("steps")
        if not isinstance(steps_data, list) or not steps_data:
            raise r.fail(
                _say("no_steps", "[{id}] needs at least one [[{id}.steps]]", id=seq_id), seq_id
            )
        steps: list[Step] = []
        steps_table = f"{seq_id}.steps"
        for i, step in enumerate(steps_data):
            r.unknown(step, ["after", "at", "key", "condition"], steps_table, i)
            after = step.get("after", "0")
            try:
                after_s = parse_duration(str(after))
            except ValueError as error:
                raise r.fail(_about("after", error), steps_table, "after", i) from None
            at = step.get("at")
            at_time = None
            if at is not None:
                m = _TIME.match(str(at))
                if not m:
                    raise r.fail(
                        _say("at", 'at must be a time of day like "10:00"', got=at),
                        steps_table,
                        "at",
                        i,
                    )
                if after_s % 86400:
                    raise r.fail(
                        _say(
                            "at_whole_days",
                            'with at = "HH:MM", after must be whole days ("0d", "1d", "3d")',
                        ),
                        steps_table,
                        "after",
                        i,
                    )
                at_time = time(int(m.group(1)), int(m.group(2)))
            key = step.get("key")
            if not isinstance(key, str) or not key:
                raise r.fail(
                    _say("key", 'key must name a persona key, e.g. "friends/fu_day1"'),
                    steps_table,
                    "key",
                    i,
                )
            problem = check_key(key)
            if problem:
                raise r.fail(problem, steps_table, "key", i)
            condition = r.segment(step.get("condition"), steps_table, "condition", i)
            if steps and after_s < steps[-1].after_s:
                raise r.fail(
                    _say(
                        "step_order",
                        "steps must be in time order (after is earlier than the step before)",
                    ),
                    steps_table,
                    "after",
                    i,
                )
            steps.append(
                Step(after_s, key, at_time, condition, line_of(text, steps_table, "key", i))
            )
        sequences[seq_id] = Sequence(
            id=seq_id,
            anchor=anchor,
            steps=tuple(steps),
            segment=r.segment(table.get("segment"), seq_id, "segment"),
            exit_on_reply=bool(table.get("exit_on_reply", True)),
            exit=r.segment(table.get("exit"), seq_id, "exit"),
            reenter=bool(table.get("reenter", False)),
        )
    return Followups(sequences)


def _anchor_ok(anchor: str) -> bool:
    kind, sep, arg = anchor.partition(":")
    if kind in ("friend_added", "purchased"):
        return not sep
    if kind == "joined_room":
        return not sep or bool(arg.strip())
    if kind == "tagged":
        try:
            check_tag(arg)
        except ValueError:
            return False
        return True
    return False


def parse_columns(label: str, text: str) -> Columns:
    r = _Reader(label, text)
    data = _toml(label, text)
    r.unknown(data, ["columns", "values"], None)
    table = data.get("columns", {})
    values = data.get("values", {})
    for name, value in (("columns", table), ("values", values)):
        if not isinstance(value, dict):
            raise r.fail(_say("table", "{name} must be a table: [{name}]", name=name), None, name)
    r.unknown(table, DEFAULT_COLUMNS, "columns")
    r.unknown(values, ["true", "false"], "values")
    aliases = dict(DEFAULT_COLUMNS)
    seen: dict[str, str] = {}
    for canonical, words in table.items():
        aliases[canonical] = (*DEFAULT_COLUMNS[canonical], *r.words(words, "columns", canonical))
        for word in r.words(words, "columns", canonical):
            other = seen.setdefault(header_key(word), canonical)
            if other != canonical:
                raise r.fail(
                    _say(
                        "column_twice",
                        "{word!r} names two columns: {other} and {column}",
                        word=word,
                        other=other,
                        column=canonical,
                    ),
                    "columns",
                    canonical,
                )
    return Columns.of(
        aliases,
        r.words(values.get("true"), "values", "true"),
        r.words(values.get("false"), "values", "false"),
    )


# -- the set of files, with reload -------------------------------------------------------------
FILES = ("requests.toml", "channels.toml", "tags.toml", "followups.toml", "csv.toml")


class DataFiles:
    """The parsed files and the (mtime, size) they were read at."""

    def __init__(self, folder: Path, label: str) -> None:
        self.folder = folder
        self.label = label  # how files are named in messages, e.g. "persona/friends"
        self.requests = RequestRules()
        self.channels = Channels()
        self.tags = TagRules()
        self.followups = Followups()
        self.columns = Columns.of(DEFAULT_COLUMNS)
        self._stamps: dict[str, tuple[int, int] | None] = {}

    def _stamp(self, name: str) -> tuple[int, int] | None:
        try:
            st = (self.folder / name).stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _parse(self, name: str, check_key: KeyCheck) -> Any:
        label = f"{self.label}/{name}"
        path = self.folder / name
        try:
            text = path.read_text(encoding="utf-8") if path.exists() else ""
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(
                label, None, _say("unreadable", "cannot read: {error}", error=error)
            ) from None
        if name == "requests.toml":
            return parse_requests(label, text)
        if name == "channels.toml":
            return parse_channels(label, text)
        if name == "tags.toml":
            return parse_tags(label, text)
        if name == "followups.toml":
            return parse_followups(label, text, check_key)
        return parse_columns(label, text)

    def _apply(self, name: str, value: Any) -> None:
        attr = {
            "requests.toml": "requests",
            "channels.toml": "channels",
            "tags.toml": "tags",
            "followups.toml": "followups",
            "csv.toml": "columns",
        }[name]
        setattr(self, attr, value)

    def load(self, check_key: KeyCheck) -> None:
        """Start-up: every file must be right (DataError on the first problem)."""
        for name in FILES:
            stamp = self._stamp(name)
            self._apply(name, self._parse(name, check_key))
            self._stamps[name] = stamp

    def reload_if_changed(
        self, check_key: KeyCheck, *, force: bool = False
    ) -> tuple[list[str], list[DataError]]:
        """Re-read changed files; a bad one keeps its last good version. Returns the names
        of the files reloaded and the problems found."""
        reloaded: list[str] = []
        errors: list[DataError] = []
        for name in FILES:
            stamp = self._stamp(name)
            if not force and stamp == self._stamps.get(name):
                continue
            self._stamps[name] = stamp  # report a broken version once, not every minute
            try:
                self._apply(name, self._parse(name, check_key))
            except DataError as error:
                errors.append(error)
                continue
            reloaded.append(name)
        return reloaded, errors
