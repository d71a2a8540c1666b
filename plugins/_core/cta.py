"""Calls to action: copy that asks customers to reply with a word ("回复“新茶”帮你留一份")
declares it next to the copy, in a campaign file or a calendar post:

    [reply]                                   reply = { keywords = ["新茶"], answer = "..." }
    keywords = ["新茶"]
    answer = "broadcasts/reply_new_tea"       the persona key that answers it
    days = 7                                  how long after receiving it the word works
    notify = true                             also tell staff (a person must act on it)

The declaration travels with the bulk job (its meta "reply"); auto_reply answers the word
for the recipients of that job while it is fresh. This module only checks the declaration,
so both plugins that send copy refuse a bad one the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pond import Problem

FIELDS = frozenset({"keywords", "answer", "days", "notify"})
MAX_DAYS = 90


class CtaError(Problem):
    """What is wrong with a declaration: `field` (e.g. "reply.answer"); `detail` is the
    operator's text from the catalogue (`cta.<code>` in persona/core/problems.toml)."""

    def __init__(self, field: str, code: str, english: str, /, **values: Any) -> None:
        super().__init__(f"cta.{code}", english, **values)
        self.field = field

    @property
    def detail(self) -> str:
        return str(self)


def parse(raw: object, has_key: Callable[[str], bool]) -> dict[str, Any]:
    """The JSON-friendly declaration stored with the job, or CtaError."""
    if not isinstance(raw, dict):
        raise CtaError(
            "reply", "table", 'a table: [reply] keywords = ["..."], answer = "plugin/key"'
        )
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise CtaError(
            f"reply.{unknown[0]}", "unknown", "unknown; known: {known}", known=sorted(FIELDS)
        )
    words = raw.get("keywords")
    if isinstance(words, str):
        words = [words]
    if (
        not isinstance(words, list)
        or not words
        or not all(isinstance(w, str) and w.strip() for w in words)
    ):
        raise CtaError("reply.keywords", "keywords", 'a list of words, e.g. keywords = ["word"]')
    answer = raw.get("answer")
    if not isinstance(answer, str) or "/" not in answer:
        raise CtaError(
            "reply.answer", "answer", 'a persona key, e.g. answer = "broadcasts/reply_new_tea"'
        )
    if not has_key(answer):
        raise CtaError(
            "reply.answer",
            "answer_unknown",
            "unknown persona key {key!r}: no file persona/{key}.j2",
            key=answer,
        )
    days = raw.get("days", 7)
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= MAX_DAYS:
        raise CtaError(
            "reply.days",
            "days",
            "a number of days from 1 to {max}, got {days!r}",
            max=MAX_DAYS,
            days=days,
        )
    notify = raw.get("notify", False)
    if not isinstance(notify, bool):
        raise CtaError("reply.notify", "notify", "true or false")
    return {
        "keywords": [w.strip() for w in words],
        "answer": answer,
        "days": float(days),
        "notify": notify,
    }
