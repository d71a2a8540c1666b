"""Is the bot alive, and how is it doing: the heartbeat and liveness, the collection behind
the plugins' review/agenda/summary/status sources, the command-line mailbox, and the
logging set-up (structured, rotated, redacted).

The heartbeat is a row in the `health` key/value namespace (and the same JSON in
<data_dir>/heartbeat.json for external watchdogs), rewritten every HEALTH_HEARTBEAT_S by the
running bot. The command line (scripts/admin.py) reads it to learn whether a bot is running
on the same data: if so it hands its command to that bot through the mailbox (so in-memory
state such as pauses and caches stays the bot's alone); if not, it runs the command itself
on an offline transport that never sends anything."""

from pond.health.common import (
    HEARTBEAT_FILE,
    HEARTBEAT_KEY,
    NAMESPACE,
    HealthConfig,
    Liveness,
    bot_pid,
    health_config,
    is_live,
    liveness,
    pid_alive,
    read_heartbeat,
)
from pond.health.heartbeat import Heartbeat, heartbeat
from pond.health.logs import (
    JsonFormatter,
    RedactFilter,
    configure_logging,
    secrets_of,
    secure_data_dir,
)
from pond.health.mailbox import answer_request, ask, run_captured
from pond.health.sources import collect_agenda, collect_reviews, collect_status, collect_summaries
from pond.transports.offline import OfflineTransport

__all__ = [
    "HEARTBEAT_FILE",
    "HEARTBEAT_KEY",
    "NAMESPACE",
    "HealthConfig",
    "Heartbeat",
    "JsonFormatter",
    "Liveness",
    "OfflineTransport",
    "RedactFilter",
    "answer_request",
    "ask",
    "bot_pid",
    "collect_agenda",
    "collect_reviews",
    "collect_status",
    "collect_summaries",
    "configure_logging",
    "health_config",
    "heartbeat",
    "is_live",
    "liveness",
    "pid_alive",
    "read_heartbeat",
    "run_captured",
    "secrets_of",
    "secure_data_dir",
]
