"""The transport of the command-line tools (scripts/admin.py, broadcast.py, contacts.py):
an App needs one, and this one never connects and never sends. Actions meet an offline
TransportError, so an outbox would hold them rather than lose them; the tools never run one."""

from __future__ import annotations

from pond.actions import Action
from pond.transports.base import EventSink, StatusListener, TransportError


class OfflineTransport:
    name = "offline"
    capabilities: frozenset[str] = frozenset()

    def __init__(self, tool: str = "the command line") -> None:
        self.tool = tool
        self.self_id = ""
        self.connected = False
        self.status_listener: StatusListener = lambda status, data: None

    async def start(self, sink: EventSink) -> None:
        raise RuntimeError(f"{self.tool} never connects")

    async def perform(self, action: Action) -> None:
        raise TransportError(f"{self.tool} never sends ({action.describe()})", offline=True)

    async def stop(self) -> None:
        return None
