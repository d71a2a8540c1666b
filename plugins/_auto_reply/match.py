"""Matching a customer's message against rules and the catalog.

Text and trigger words are compared in one normal form: Unicode NFKC (full-width letters,
digits and punctuation typed with Chinese input methods become half-width), lower case,
@-mentions removed, runs of whitespace collapsed. Only the first MAX_CHARS characters are
looked at: FAQ questions are short, and it bounds the cost of operators' regexes."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pond import filters

if TYPE_CHECKING:
    from plugins._auto_reply.data import Catalog, Product, Rule

MAX_CHARS = 500
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", filters.strip_mentions(text[: MAX_CHARS * 2]))
    return _SPACES.sub(" ", text).strip().lower()[:MAX_CHARS]


def skeleton(text: str) -> str:
    """What stays of a message when a bot varies it: no digits (counters, times), no
    punctuation, emoji or spaces, a character repeated in a row kept once. Two messages with
    the same skeleton are "near-identical" for the loop guard."""
    kept = [
        ch
        for ch in normalize(text)
        if not unicodedata.category(ch).startswith(("P", "S", "Z", "C", "N", "Mn"))
    ]
    return "".join(ch for i, ch in enumerate(kept) if i == 0 or kept[i - 1] != ch)


def text_matches(rule: Rule, text: str) -> bool:
    """`text` is normalized. any/exact/regex: at least one hits (when given); all: every
    word is there; not: none is."""
    if rule.none and any(word in text for word in rule.none):
        return False
    if rule.all and not all(word in text for word in rule.all):
        return False
    triggers = bool(rule.any or rule.exact or rule.regex)
    if not triggers:
        return bool(rule.all)
    return (
        any(word in text for word in rule.any)
        or text in rule.exact
        or any(pattern.search(text) for pattern in rule.regex)
    )


def scope_of(is_private: bool, mentioned: bool) -> str:
    if is_private:
        return "private"
    return "room_mention" if mentioned else "room"


def in_scope(scopes: Iterable[str], rooms: frozenset[str], scope: str, room_id: str) -> bool:
    """ "room" (every message in the room) includes the messages that mention us."""
    allowed = set(scopes)
    if scope == "private":
        return "private" in allowed
    if rooms and room_id not in rooms:
        return False
    if scope == "room_mention":
        return bool(allowed & {"room_mention", "room"})
    return "room" in allowed


def find_products(catalog: Catalog, text: str, limit: int) -> list[Product]:
    """Products named in `text` (normalized), in the order they are mentioned. Longer names
    win over names they contain ("桂花乌龙" is not also "乌龙")."""
    taken: list[tuple[int, int, str]] = []
    found: list[tuple[int, Product]] = []
    for term, product in catalog.terms:  # longest first
        start = text.find(term)
        while start != -1:
            end = start + len(term)
            # A synonym names several products: the same words may be taken again by it.
            if not any(start < b and a < end and t != term for a, b, t in taken):
                taken.append((start, end, term))
                if all(p.id != product.id for _, p in found):
                    found.append((start, product))
                break
            start = text.find(term, start + 1)
    found.sort(key=lambda item: item[0])
    return [product for _, product in found][:limit]
