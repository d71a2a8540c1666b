"""Event filters: small predicates combined by listing several (all must pass)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pond.events import Event, Message, MessageType

if TYPE_CHECKING:
    from pond.context import Context

# A filter returns whether the event passes; a filter that returns something other than
# True (a matched rule, a word) hands it to the handler as ctx.matched.
Filter = Callable[[Event], object]


@dataclass(frozen=True, slots=True)
class Configured:
    """A filter built at start-up from the plugin's Context (settings, config, data files),
    e.g. `configured(lambda ctx: exact(*ctx.config.words))`. Keeps trigger words out of code."""

    make: Callable[[Context], Filter]

    def __call__(self, event: Event) -> bool:
        raise RuntimeError("a configured filter is used before App.start() bound it")


def configured(make: Callable[[Context], Filter]) -> Configured:
    return Configured(make)


def _text(event: Event) -> str | None:
    return event.text if isinstance(event, Message) else None


def keyword(*words: str) -> Filter:
    """The message contains any of the words (case-insensitive)."""
    lowered = tuple(w.lower() for w in words)

    def check(event: Event) -> bool:
        text = _text(event)
        return text is not None and any(w in text.lower() for w in lowered)

    return check


def exact(*words: str) -> Filter:
    """The whole message (trimmed, without @-mentions) is one of the words."""
    wanted = {w.strip().lower() for w in words}

    def check(event: Event) -> bool:
        text = _text(event)
        return text is not None and strip_mentions(text).lower() in wanted

    return check


def regex(pattern: str, flags: int = re.IGNORECASE) -> Filter:
    compiled = re.compile(pattern, flags)

    def check(event: Event) -> bool:
        text = _text(event)
        return text is not None and compiled.search(text) is not None

    return check


def private() -> Filter:
    return lambda event: isinstance(event, Message) and event.room is None


def in_room(ids: Iterable[str] | None = None) -> Filter:
    """In a room; in one of `ids` when given."""
    allowed = frozenset(ids) if ids is not None else None

    def check(event: Event) -> bool:
        room = getattr(event, "room", None)
        return room is not None and (allowed is None or room.id in allowed)

    return check


def from_contacts(ids: Iterable[str]) -> Filter:
    allowed = frozenset(ids)
    return lambda event: isinstance(event, Message) and event.sender.id in allowed


def message_type(*types: MessageType) -> Filter:
    allowed = frozenset(types)
    return lambda event: isinstance(event, Message) and event.type in allowed


_MENTION = re.compile(r"@\S+[\u2005\s]?")


def strip_mentions(text: str) -> str:
    """WeChat puts a four-per-em space (U+2005) after an @name; drop mentions and trim."""
    return _MENTION.sub("", text).strip()
