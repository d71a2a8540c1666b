"""Campaign records, operator requests and the bot's heartbeat, in the plugin's durable SQL
key-value namespace (shared by the bot and scripts/broadcast.py on one data dir).

Who writes what, so two processes never overwrite each other's news:
- `campaign:<id>`: created (or re-created while still a draft) by either process; every later
  transition is written by the running bot only.
- `req:<id>:<stamp>`: one key per request of the command-line tool (start, pause, resume,
  cancel), applied in order by the bot's minute check and then deleted.
- `heartbeat`: the bot, every minute; the tool reads it to say honestly whether a bot is
  there to act on its requests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from pond import Context, Namespace

DRAFT = "draft"
SCHEDULED = "scheduled"
RUNNING = "running"
PAUSED = "paused"
DONE = "done"
CANCELLED = "cancelled"
EXPIRED = "expired"
MISSED = "missed"
BLOCKED = "blocked"

EDITABLE = frozenset({DRAFT, BLOCKED})  # may be re-created from the file, may be started
LIVE = frozenset({SCHEDULED, RUNNING, PAUSED})
FINAL = frozenset({DONE, CANCELLED, EXPIRED, MISSED})
STARTED = frozenset({RUNNING, PAUSED, DONE, EXPIRED})  # has a journal
ACTIONS = ("start", "pause", "resume", "cancel")

Record = dict[str, Any]


@dataclass(frozen=True)
class BroadcastsConfig:
    # Persona keys a campaign may use as its copy (keeps operator templates out of 群发).
    copy_prefixes: tuple[str, ...] = ("broadcasts/copy_",)
    # Where `broadcast_create <name>` looks for <name>.toml; empty: <persona>/broadcasts/campaigns
    campaigns_dir: str = ""
    # Contacts with one of these tags (or the churned stage) are left out.
    churned_tags: tuple[str, ...] = ("churned",)
    sample_size: int = 3
    # A confirmed campaign the bot could not start within this many hours is never sent late.
    max_late_h: float = 6.0
    # At the start, refuse when the audience grew more than this since the confirmation.
    audience_growth_pct: float = 10.0
    # Send the report to the admins this long after a campaign ends (0: off).
    followup_report_h: float = 24.0


@dataclass
class BroadcastsState:
    """What the bot keeps in memory per App: the wall-clock time of its last heartbeat."""

    last_beat: float = 0.0


def build_state(ctx: Context[BroadcastsConfig, BroadcastsState]) -> BroadcastsState:
    return BroadcastsState()


Ctx = Context[BroadcastsConfig, BroadcastsState]


class Campaigns:
    def __init__(self, kv: Namespace) -> None:
        self.kv = kv

    def get(self, cid: str) -> Record | None:
        value = self.kv.get(f"campaign:{cid}")
        return dict(value) if isinstance(value, dict) else None

    def save(self, record: Record) -> None:
        self.kv.set(f"campaign:{record['id']}", record)

    def all(self) -> list[Record]:
        records = [dict(v) for _, v in self.kv.items("campaign:") if isinstance(v, dict)]
        return sorted(records, key=lambda r: (r.get("created_at", 0.0), r["id"]))

    # -- requests from the command-line tool ---------------------------------------------
    def request(self, cid: str, action: str, at: float, by: str, **data: Any) -> str:
        if action not in ACTIONS:
            raise ValueError(f"unknown request {action!r}")
        # Sortable by time; the random tail keeps two requests in one microsecond apart.
        key = f"req:{cid}:{at:017.6f}:{secrets.token_hex(3)}"
        self.kv.set(key, {"campaign": cid, "action": action, "at": at, "by": by, **data})
        return key

    def requests(self, cid: str | None = None) -> list[tuple[str, Record]]:
        prefix = f"req:{cid}:" if cid else "req:"
        found = [(k, dict(v)) for k, v in self.kv.items(prefix) if isinstance(v, dict)]
        return sorted(found, key=lambda kv: (kv[1].get("at", 0.0), kv[0]))

    def drop_request(self, key: str) -> None:
        self.kv.delete(key)

    # -- heartbeat -----------------------------------------------------------------------
    def beat(self, data: Record) -> None:
        self.kv.set("heartbeat", data)

    def heartbeat(self) -> Record | None:
        value = self.kv.get("heartbeat")
        return dict(value) if isinstance(value, dict) else None


def new_record(spec: dict[str, Any], at: float, by: str) -> Record:
    return {
        "id": spec["id"],
        "title": spec["title"],
        "spec": spec,
        "status": DRAFT,
        "created_at": at,
        "created_by": by,
        "confirmed": None,  # {"count", "at", "by"} once an operator confirmed the start
        "start_at": None,  # effective start time, set at confirmation
        "started_at": None,
        "finished_at": None,
        "audience": None,  # snapshot at start: candidates, eligible, excluded by reason
        "note": None,  # the last problem: {"code", "detail"}
        "followup_sent": False,
        "history": [{"at": at, "event": "created", "by": by}],
    }


def note_event(record: Record, event: str, at: float, by: str = "", **data: Any) -> None:
    """A short trail on the record itself (the full audit is in the events table)."""
    history = list(record.get("history") or [])
    history.append({"at": at, "event": event, "by": by, **data})
    record["history"] = history[-30:]
