"""Short-lived, in-memory state of the auto_reply plugin, one per App.

Nothing here is persisted and nothing here is logged: a restart forgets it, which costs at
most one extra answer (a cooldown or a fallback window starts over) or a hand-off note
with fewer "last messages". Every map is bounded so a busy account cannot grow it."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from datetime import datetime
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_CHATS = 5000
MAX_TEXT = 200  # characters kept of one message for the hand-off note
ECHO_MIN_CHARS = 8  # a short reply ("好的") sent back may well be a person


class Lru(Generic[K, V]):
    def __init__(self, size: int = MAX_CHATS) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class Memory:
    def __init__(self, history_size: int) -> None:
        self.history_size = max(0, history_size)
        # chat id -> the customer's last messages (time, text): the hand-off note's context.
        self._history: Lru[str, deque[tuple[datetime, str]]] = Lru()
        # (contact id, rule id or "product:<id>" or "fallback") -> quiet until (epoch s)
        self._quiet: Lru[tuple[str, str], float] = Lru(MAX_CHATS * 4)
        # sender key (see reply.sender_key) -> (epoch s, hash of the skeleton) of the
        # messages we answered: the loop guard looks at one sender, never at a whole room
        self._answered: Lru[str, deque[tuple[float, int]]] = Lru()
        # chat id -> (epoch s, hash of the skeleton) of our own recent replies there
        self._ours: Lru[str, deque[tuple[float, int]]] = Lru()
        # (day, contact id) -> LLM questions asked today
        self._llm: Lru[tuple[str, str], int] = Lru()

    # -- hand-off context ----------------------------------------------------------------
    def remember(self, chat_id: str, at: datetime, text: str) -> None:
        if not self.history_size or not text.strip():
            return
        kept = self._history.get(chat_id)
        if kept is None:
            kept = deque(maxlen=self.history_size)
        kept.append((at, text.strip()[:MAX_TEXT]))
        self._history.put(chat_id, kept)

    def recent(self, chat_id: str) -> list[dict[str, Any]]:
        kept = self._history.get(chat_id) or ()
        return [{"at": at.strftime("%H:%M"), "text": text} for at, text in kept]

    def forget(self, chat_id: str) -> None:
        self._history.pop(chat_id)

    # -- cooldowns and windows -------------------------------------------------------------
    def quiet(self, contact_id: str, what: str, now: float) -> bool:
        until = self._quiet.get((contact_id, what))
        return until is not None and now < until

    def hush(self, contact_id: str, what: str, now: float, seconds: float) -> None:
        if seconds > 0:
            self._quiet.put((contact_id, what), now + seconds)

    # -- loop guard --------------------------------------------------------------------------
    def loop(
        self,
        sender: str,
        chat_id: str,
        text: str,
        now: float,
        *,
        repeats: int,
        window_s: float,
        most: int,
    ) -> str | None:
        """Why answering `text` (a skeleton) from `sender` now would look like a bot talking
        to us ("echo": it sends back one of our replies; "repeat": the same message again
        and again; "rate": too many answers), or None."""
        ours = self._ours.get(chat_id) or ()
        if text and any(now - at < window_s and h == hash(text) for at, h in ours):
            return "echo"
        answered = [e for e in self._answered.get(sender) or () if now - e[0] < window_s]
        recent = answered[-(repeats - 1) :] if repeats > 1 else []
        if recent and len(recent) == repeats - 1 and all(h == hash(text) for _, h in recent):
            return "repeat"
        if most > 0 and len(answered) >= most:
            return "rate"
        return None

    def answered(self, sender: str, text: str, now: float, keep: int) -> None:
        _append(self._answered, sender, (now, hash(text)), keep)

    def replied(self, chat_id: str, text: str, now: float, keep: int = 4) -> None:
        """Our own reply (its skeleton), so a bot sending it back is recognised."""
        if len(text) >= ECHO_MIN_CHARS:
            _append(self._ours, chat_id, (now, hash(text)), keep)

    # -- LLM per-contact budget ---------------------------------------------------------------
    def llm_count(self, day: str, contact_id: str) -> int:
        return self._llm.get((day, contact_id)) or 0

    def llm_asked(self, day: str, contact_id: str) -> None:
        self._llm.put((day, contact_id), self.llm_count(day, contact_id) + 1)


def _append(
    lru: Lru[str, deque[tuple[float, int]]], key: str, entry: tuple[float, int], keep: int
) -> None:
    kept = lru.get(key)
    if kept is None or kept.maxlen != max(keep, 1):
        kept = deque(kept or (), maxlen=max(keep, 1))
    kept.append(entry)
    lru.put(key, kept)
