"""Chats where the bot keeps quiet: a human took over on the phone, a customer was handed
to staff, or an operator paused one chat or everything. Persisted, so a restart does not
make the bot talk over a human."""

from __future__ import annotations

from pond.clock import Clock
from pond.store import Namespace

ALL = "*"
_PREFIX = "pause:"


class Pauses:
    def __init__(self, kv: Namespace, clock: Clock) -> None:
        self.kv = kv
        self.clock = clock
        self._active: dict[str, tuple[float | None, str]] = {}
        for key, value in kv.items(_PREFIX):
            if isinstance(value, dict):
                until = value.get("until")
                self._active[key.removeprefix(_PREFIX)] = (
                    float(until) if until is not None else None,
                    str(value.get("reason", "")),
                )

    def pause(self, chat_id: str, *, minutes: float | None, reason: str) -> None:
        """Pause `chat_id` (or ALL) for `minutes`, or until resumed when None."""
        until = None if minutes is None else self.clock.now().timestamp() + minutes * 60
        self._active[chat_id] = (until, reason)
        self.kv.set(_PREFIX + chat_id, {"until": until, "reason": reason})

    def resume(self, chat_id: str) -> bool:
        if self._active.pop(chat_id, None) is None:
            return False
        self.kv.delete(_PREFIX + chat_id)
        return True

    def reason(self, chat_id: str) -> str | None:
        """Why this chat is paused now, or None."""
        for key in (chat_id, ALL):
            entry = self._active.get(key)
            if entry is None:
                continue
            until, why = entry
            if until is not None and self.clock.now().timestamp() >= until:
                self.resume(key)
                continue
            return why
        return None

    def active(self) -> dict[str, tuple[float | None, str]]:
        return {chat: entry for chat, entry in self._active.items() if self.reason(chat)}
