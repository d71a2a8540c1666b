"""Segments as tag expressions: `vip and not churned`, `channel:A1 or channel:A2`,
`(vip or interest:tea) and not opted_out`. Tags are words without spaces or parentheses;
`and`, `or`, `not` (also 且 / 或 / 非) combine them.

Besides real tags, the customer book derives a few words for every contact (see
pond.customers.DERIVED): `opted_out`, `friend`, `churned`, `stage:<stage>`,
`channel:<code>`. A segment matches against tags plus those words."""

from __future__ import annotations

import re
from collections.abc import Callable, Set
from dataclasses import dataclass
from typing import Any

from pond.problems import Problem

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
_WORDS = {"and": "and", "且": "and", "or": "or", "或": "or", "not": "not", "非": "not"}

Predicate = Callable[[Set[str]], bool]


class SegmentError(Problem):
    """A segment that cannot be parsed. `pos` is the 1-based character position of the
    problem in the expression (0 when the whole expression is at fault). The Chinese text
    is the catalogue's `segment.<code>` (persona/core/problems.toml)."""

    def __init__(self, code: str, english: str, pos: int = 0, **values: Any) -> None:
        super().__init__(f"segment.{code}", english, pos=pos, **values)
        self.pos = pos


@dataclass(frozen=True)
class Segment:
    text: str
    test: Predicate
    tags: frozenset[str]  # every tag the expression mentions

    @classmethod
    def parse(cls, text: str) -> Segment:
        found = [(m.group(1), m.start(1) + 1) for m in _TOKEN.finditer(text)]
        tokens = [t for t, _ in found if t.strip()]
        where = [p for t, p in found if t.strip()]
        if not tokens:
            raise SegmentError("empty", "empty segment: write tags joined by and / or / not")
        mentioned: set[str] = set()
        pos = 0

        def fail(code: str, reason: str, index: int, **values: Any) -> SegmentError:
            at = where[index] if index < len(where) else len(text.rstrip()) + 1
            english = f"segment {text!r}: {reason} at position {at}"
            return SegmentError(code, english, at, text=text, **values)

        def peek() -> str | None:
            return tokens[pos] if pos < len(tokens) else None

        def take() -> str:
            nonlocal pos
            if pos >= len(tokens):
                raise fail("ends_early", "ends too early (a tag is missing)", pos)
            pos += 1
            return tokens[pos - 1]

        def op(token: str | None) -> str | None:
            return _WORDS.get(token.lower()) if token else None

        def expr() -> Predicate:
            left = term()
            while op(peek()) == "or":
                take()
                right = term()
                left = (lambda a, b: lambda tags: a(tags) or b(tags))(left, right)
            return left

        def term() -> Predicate:
            left = factor()
            while op(peek()) == "and":
                take()
                right = factor()
                left = (lambda a, b: lambda tags: a(tags) and b(tags))(left, right)
            return left

        def factor() -> Predicate:
            token = take()
            if op(token) == "not":
                inner = factor()
                return lambda tags: not inner(tags)
            if token == "(":
                opened = pos - 1
                inner = expr()
                if peek() != ")":
                    opened_at = where[opened]
                    reason = f"missing ) for the ( at position {opened_at}"
                    raise fail("unclosed", reason, pos, opened=opened_at)
                take()
                return inner
            if token == ")" or op(token):
                raise fail("unexpected", f"unexpected {token!r}", pos - 1, token=token)
            mentioned.add(token)
            return lambda tags: token in tags

        test = expr()
        if pos != len(tokens):
            extra = tokens[pos]
            reason = f"unexpected {extra!r} (join tags with and / or)"
            raise fail("trailing", reason, pos, token=extra)
        return cls(text, test, frozenset(mentioned))

    def matches(self, tags: Set[str]) -> bool:
        return self.test(tags)
