"""Segments as tag expressions: `vip and not churned`, `channel:A1 or channel:A2`,
`(vip or interest:tea) and not opted_out`. Tags are words without spaces or parentheses;
`and`, `or`, `not` (also 且 / 或 / 非) combine them."""

from __future__ import annotations

import re
from collections.abc import Callable, Set
from dataclasses import dataclass

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
_WORDS = {"and": "and", "且": "and", "or": "or", "或": "or", "not": "not", "非": "not"}

Predicate = Callable[[Set[str]], bool]


class SegmentError(ValueError):
    pass


@dataclass(frozen=True)
class Segment:
    text: str
    test: Predicate
    tags: frozenset[str]  # every tag the expression mentions

    @classmethod
    def parse(cls, text: str) -> Segment:
        tokens = [m.group(1) for m in _TOKEN.finditer(text) if m.group(1).strip()]
        if not tokens:
            raise SegmentError("empty segment: write tags joined by and / or / not")
        mentioned: set[str] = set()
        pos = 0

        def peek() -> str | None:
            return tokens[pos] if pos < len(tokens) else None

        def take() -> str:
            nonlocal pos
            if pos >= len(tokens):
                raise SegmentError(f"segment {text!r} ends too early")
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
                inner = expr()
                if take() != ")":
                    raise SegmentError(f"segment {text!r}: missing )")
                return inner
            if token == ")" or op(token):
                raise SegmentError(f"segment {text!r}: unexpected {token!r}")
            mentioned.add(token)
            return lambda tags: token in tags

        test = expr()
        if pos != len(tokens):
            raise SegmentError(f"segment {text!r}: unexpected {tokens[pos]!r}")
        return cls(text, test, frozenset(mentioned))

    def matches(self, tags: Set[str]) -> bool:
        return self.test(tags)
