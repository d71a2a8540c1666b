"""pond: a WeChat private-traffic (私域流量) assistant kernel. Plugins import only from here
(tests/test_boundaries.py holds them to it): everything a plugin needs is re-exported below,
and everything it does with the kernel goes through its Context."""

from pond import filters
from pond.actions import Action, ActionClass, ActionKind, Media, MediaKind
from pond.app import App, HandlerError, StartupError
from pond.binding import Guard as LoginGuard
from pond.binding import Limits as LoginLimits
from pond.clock import Clock, FakeClock, SystemClock, parse_duration
from pond.commands import Admins, Arg, Command, Commands, UsageError
from pond.config import (
    ConfigError,
    DailyWindow,
    OutboxSettings,
    Range,
    Settings,
    config_sections,
    env_key,
    setting,
)
from pond.context import Context
from pond.cron import cron_trigger
from pond.customers import (
    STAGES,
    BookChange,
    Customer,
    CustomerBook,
    bad_stage,
    check_tag,
    facts_of,
)
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
from pond.ledger import BulkRow, JobStatus, Ledger, RowStatus, action_to_json
from pond.outbox import Outbox, Outcome
from pond.pauses import ALL as ALL_CHATS
from pond.pauses import Pauses
from pond.persona import Persona, PersonaError, Rendered
from pond.plugin import AgendaItem, Plugin, ReviewItem
from pond.problems import Problem, toml_line, toml_problem
from pond.segments import Segment, SegmentError
from pond.store import Namespace, SqlStore, Store, UTCDateTime
from pond.store.lock import running as bot_running
from pond.transports import base as capabilities
from pond.transports.base import Mode, waits_for_staff

__all__ = [
    "ALL_CHATS",
    "STAGES",
    "Action",
    "ActionClass",
    "ActionKind",
    "Admins",
    "AgendaItem",
    "App",
    "Arg",
    "BookChange",
    "BulkRow",
    "Clock",
    "Command",
    "Commands",
    "ConfigError",
    "Contact",
    "Context",
    "Customer",
    "CustomerBook",
    "DailyWindow",
    "Event",
    "FakeClock",
    "FriendRequest",
    "HandlerError",
    "HumanTakeover",
    "JobStatus",
    "Ledger",
    "LoginGuard",
    "LoginLimits",
    "Media",
    "MediaKind",
    "MemberJoined",
    "MemberLeft",
    "Message",
    "MessageType",
    "Mode",
    "Namespace",
    "Outbox",
    "OutboxSettings",
    "Outcome",
    "Pauses",
    "Persona",
    "PersonaError",
    "Plugin",
    "Problem",
    "Range",
    "Rendered",
    "ReviewItem",
    "Room",
    "RowStatus",
    "Segment",
    "SegmentError",
    "Settings",
    "SqlStore",
    "StartupError",
    "Store",
    "SystemClock",
    "UTCDateTime",
    "UsageError",
    "action_to_json",
    "bad_stage",
    "bot_running",
    "capabilities",
    "check_tag",
    "config_sections",
    "cron_trigger",
    "env_key",
    "facts_of",
    "filters",
    "parse_duration",
    "setting",
    "toml_line",
    "toml_problem",
    "waits_for_staff",
]
