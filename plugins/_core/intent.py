"""Recognising that a short message asks for something ("我想进群" asks for 进群), shared by
plugins whose copy promises an action. The negation guard is the one copywriters keep in
persona/core/optout.toml ([guards] negations), so "我不想进群" is not a request."""

from __future__ import annotations

from collections.abc import Iterable

from plugins._core.live import live
from plugins._core.optout import fold
from pond import Context

MAX_CHARS = 20  # a long message that mentions the word is about something else


def asks_for(ctx: Context, text: str, words: Iterable[str]) -> str | None:
    """The first of `words` (longest first) that the short `text` asks for, or None."""
    folded = fold(text)
    if not folded or len(folded) > MAX_CHARS:
        return None
    found = live(ctx)
    matcher = found.matcher if found is not None else None
    negation = matcher.negation if matcher is not None else None
    for word in sorted(words, key=len, reverse=True):
        target = fold(word)
        start = folded.find(target) if target else -1
        while start != -1:
            if negation is None or not negation.search(folded[:start]):
                return word
            start = folded.find(target, start + 1)
    return None
