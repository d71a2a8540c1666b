"""What a transport is. The kernel knows only this protocol."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from pond.actions import Action
from pond.events import Event

EventSink = Callable[[Event], Awaitable[None]]

# Capability flags plugins may query (DESIGN.md section 7).
DM = "dm"
ROOMS = "rooms"
FRIEND_REQUESTS = "friend_requests"
MOMENTS = "moments"
TAGS = "tags"
KICK = "kick"
INVITE = "invite"
ADD_FRIEND = "add_friend"


class TransportError(Exception):
    """A failed action. `throttled` means the platform signalled rate limiting."""

    def __init__(self, message: str, *, throttled: bool = False, retryable: bool = True) -> None:
        super().__init__(message)
        self.throttled = throttled
        self.retryable = retryable


class Transport(Protocol):
    name: str
    capabilities: frozenset[str]
    self_id: str  # the account's own contact id, known after login

    async def start(self, sink: EventSink) -> None:
        """Connect and begin delivering events to `sink`; returns once connected."""

    async def perform(self, action: Action) -> None:
        """Carry out one action; raise TransportError on failure."""

    async def stop(self) -> None: ...
