"""In-memory transport for tests and benchmarks: records every action it performs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pond.actions import Action
from pond.transports.base import (
    ADD_FRIEND,
    DM,
    FRIEND_REQUESTS,
    INVITE,
    KICK,
    MEDIA,
    MENTIONS,
    ROOMS,
    TAGS,
    EventSink,
    StatusListener,
    TransportError,
)

ALL_BUT_MOMENTS = frozenset(
    {DM, ROOMS, MENTIONS, MEDIA, FRIEND_REQUESTS, TAGS, KICK, INVITE, ADD_FRIEND}
)


@dataclass(frozen=True, slots=True)
class Performed:
    at: datetime
    action: Action


class MemoryTransport:
    name = "memory"

    def __init__(
        self,
        now: Callable[[], datetime],
        *,
        self_id: str = "bot",
        capabilities: frozenset[str] = ALL_BUT_MOMENTS,
    ) -> None:
        self._now = now
        self.self_id = self_id
        self.capabilities = capabilities
        self.performed: list[Performed] = []
        self.sink: EventSink | None = None
        self.connected = True
        # One record per action, text and media together (tests assert on whole actions);
        # False makes the outbox send composite actions part by part, as on WeChat.
        self.atomic_media = True
        self.status_listener: StatusListener = lambda status, data: None
        # Tests script failures: each perform() pops one; None means success.
        self.failures: list[TransportError | None] = []

    async def start(self, sink: EventSink) -> None:
        self.sink = sink

    async def perform(self, action: Action) -> None:
        if self.failures:
            failure = self.failures.pop(0)
            if failure is not None:
                raise failure
        self.performed.append(Performed(self._now(), action))

    async def stop(self) -> None:
        self.sink = None
