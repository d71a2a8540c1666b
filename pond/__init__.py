"""pond: a WeChat private-traffic (私域流量) assistant kernel. Plugins import only from here."""

from pond import filters
from pond.actions import Action, ActionClass, ActionKind, Media, MediaKind
from pond.app import App, HandlerError, StartupError
from pond.clock import Clock, FakeClock, SystemClock
from pond.commands import Command
from pond.config import ConfigError, DailyWindow, Range, Settings, setting
from pond.context import Context
from pond.events import (
    Contact,
    Event,
    FriendRequest,
    HumanTakeover,
    MemberJoined,
    MemberLeft,
    Message,
    MessageType,
    Room,
)
from pond.ledger import JobStatus, RowStatus
from pond.outbox import Outbox, Outcome
from pond.persona import Persona, PersonaError, Rendered
from pond.plugin import AgendaItem, Plugin, ReviewItem
from pond.problems import Problem, toml_line, toml_problem
from pond.store.lock import running as bot_running
from pond.transports import base as capabilities

__all__ = [
    "Action",
    "ActionClass",
    "ActionKind",
    "AgendaItem",
    "App",
    "Clock",
    "Command",
    "ConfigError",
    "Contact",
    "Context",
    "DailyWindow",
    "Event",
    "FakeClock",
    "FriendRequest",
    "HandlerError",
    "HumanTakeover",
    "JobStatus",
    "Media",
    "MediaKind",
    "MemberJoined",
    "MemberLeft",
    "Message",
    "MessageType",
    "Outbox",
    "Outcome",
    "Persona",
    "PersonaError",
    "Plugin",
    "Problem",
    "Range",
    "Rendered",
    "ReviewItem",
    "Room",
    "RowStatus",
    "Settings",
    "StartupError",
    "SystemClock",
    "bot_running",
    "capabilities",
    "filters",
    "setting",
    "toml_line",
    "toml_problem",
]
