"""What a transport is. The kernel knows only this protocol."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any, Protocol

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
MENTIONS = "mentions"  # @-mention people in rooms, and see who mentions the account
MEDIA = "media"  # images, files, link cards


class Mode(StrEnum):
    """How a transport can carry out one kind of action (DESIGN.md section 7). Plugins ask
    with `mode_of(transport, kind)` and choose: send, wait for the window, prepare a task
    for staff, or tell staff to do it by hand."""

    AUTO = "auto"  # done by the API at once
    WINDOW = "window"  # only inside a window the customer opens (kf: 5 replies in 48 h)
    STAFF_CONFIRM = "staff_confirm"  # becomes a task a staff member confirms in the client
    NONE = "none"  # no API: the action is refused, staff must do it


# Mode keys: the ActionKind values ("send", "kick", "post", ...) and these finer kinds.
REPLY = "reply"  # a 1:1 answer to a customer who wrote
WELCOME = "welcome"  # the greeting right after a customer adds the account
BROADCAST = "broadcast"  # a bulk send to many customers (群发)
TAG = "tag"  # tagging a customer on the platform itself


def mode_of(transport: object, kind: str) -> Mode:
    """A transport without a `modes` table does what its capabilities say, at once."""
    modes: Mapping[str, Mode] = getattr(transport, "modes", None) or {}
    return Mode(modes.get(kind, Mode.AUTO))


STAFF_CONFIRM_REASON = ":staff_confirm"  # the end of a refusal that became a staff task


def waits_for_staff(reason: str) -> bool:
    """A row or action "skipped" with this reason is not skipped: it waits in a task a staff
    member confirms in the client, and its real result arrives later (task_result)."""
    return reason.endswith(STAFF_CONFIRM_REASON)


class TransportError(Exception):
    """A failed action. The flags are a contract with the outbox, which relies on them to
    never send twice:
    - `throttled`: the platform refused the action as too frequent (it did not happen);
    - `offline`: the action was not attempted because the connection is down;
    - `retryable`: the action certainly did not take effect, so one retry is safe;
    - `gone`: the recipient is no longer a friend (they deleted or blocked the account), so
      it cannot work later either;
    - `refused`: the platform's rules do not allow it now (no API, a window closed, a quota
      used up): it was not attempted; a short reason code the outbox records as "skipped".
      A reason ending in ":staff_confirm" means it became a task a staff member confirms
      in the client (results come later as "task_result" / "moment_result" statuses).
    Anything ambiguous (a timeout after the request left) must leave all four False."""

    def __init__(
        self,
        message: str,
        *,
        throttled: bool = False,
        retryable: bool = False,
        offline: bool = False,
        gone: bool = False,
        refused: str = "",
    ) -> None:
        super().__init__(message)
        self.refused = refused
        self.throttled = throttled
        self.retryable = retryable
        self.offline = offline
        self.gone = gone


StatusListener = Callable[[str, dict[str, Any]], None]


class Transport(Protocol):
    name: str
    capabilities: frozenset[str]
    self_id: str  # the account's own contact id, known after login
    connected: bool  # False while the connection is down: the outbox holds actions
    # Set by the App: "login", "logout", "disconnected", "reconnected", "scan" with details.
    status_listener: StatusListener

    async def start(self, sink: EventSink) -> None:
        """Connect and begin delivering events to `sink`; returns once connected."""

    async def perform(self, action: Action) -> None:
        """Carry out one action; raise TransportError on failure."""

    async def stop(self) -> None: ...
