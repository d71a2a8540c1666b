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
        # chat id -> (epoch s, hash of the normalized text) of messages we answered
        self._answered: Lru[str, deque[tuple[float, int]]] = Lru()
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
        self, chat_id: str, text: str, now: float, *, repeats: int, window_s: float, most: int
    ) -> str | None:
        """Why answering `text` now would look like a loop ("repeat", "rate"), or None."""
        answered = [e for e in self._answered.get(chat_id) or () if now - e[0] < window_s]
        recent = answered[-(repeats - 1) :] if repeats > 1 else []
        if recent and len(recent) == repeats - 1 and all(h == hash(text) for _, h in recent):
            return "repeat"
        if most > 0 and len(answered) >= most:
            return "rate"
        return None

    def answered(self, chat_id: str, text: str, now: float, keep: int) -> None:
        kept = self._answered.get(chat_id)
        if kept is None or kept.maxlen != max(keep, 1):
            kept = deque(kept or (), maxlen=max(keep, 1))
        kept.append((now, hash(text)))
        self._answered.put(chat_id, kept)

    # -- LLM per-contact budget ---------------------------------------------------------------
    def llm_count(self, day: str, contact_id: str) -> int:
        return self._llm.get((day, contact_id)) or 0

    def llm_asked(self, day: str, contact_id: str) -> None:
        self._llm.put((day, contact_id), self.llm_count(day, contact_id) + 1)
