"""The durable ends of the pipeline: the inbox (every inbound event, received then handled)
and the outbox queue (every action until it is sent, failed, skipped or unknown).

Both write through the SQL store's group commit (`SqlStore.defer`): an event's "handled"
mark, the actions its handlers queued, their key/value state and recorded events reach the
database in the same transaction when the handler finishes within one batch window, and
nothing is sent before the batch that queued it is committed. See docs/DURABILITY.md."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from pond.actions import Action
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
from pond.ledger import action_from_json, action_to_json
from pond.store import SqlStore
from pond.store.sql import clean_text, clean_value

_KEY = 255


class InboxStatus(StrEnum):
    RECEIVED = "received"  # journaled, handlers not finished
    HANDLED = "handled"  # what the handlers decided is stored ("seen" means this)
    STALE = "stale"  # too old when it arrived (or when we came back): recorded, not answered


class QueueStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # durable before the transport is called (per part)
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"  # was "sending" when the process died: listed, never re-sent


FINAL = {QueueStatus.SENT, QueueStatus.FAILED, QueueStatus.SKIPPED, QueueStatus.UNKNOWN}


@dataclass(slots=True)
class Origin:
    """The event (or job run) whose handlers are running: the actions they queue are named
    (origin key, ordinal), so handling the same event again after a crash queues nothing
    twice. `replay` is True when the event is handled again after a restart."""

    key: str
    replay: bool = False
    _next: int = field(default=0)

    def next_id(self) -> str:
        n = self._next
        self._next += 1
        return f"{self.key}#{n}"


CURRENT_ORIGIN: ContextVar[Origin | None] = ContextVar("pond_origin", default=None)


@contextmanager
def origin(key: str, *, replay: bool = False) -> Iterator[Origin]:
    o = Origin(key, replay)
    token = CURRENT_ORIGIN.set(o)
    try:
        yield o
    finally:
        CURRENT_ORIGIN.reset(token)


def new_action_id() -> str:
    """An action without an inbound origin (alerts, transport news)."""
    return "x:" + uuid.uuid4().hex


def safe_key(text: str) -> str:
    """A primary key every backend stores: encodable, at most 255 characters."""
    text = clean_text(text)
    if len(text) <= _KEY:
        return text
    return text[:200] + "~" + hashlib.sha256(text.encode()).hexdigest()[:40]


def define_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    if "inbox" in metadata.tables:
        return dict(metadata.tables)
    sa.Table(
        "inbox",
        metadata,
        sa.Column("key", sa.String(_KEY), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("handled_at", sa.Float, nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Index("ix_inbox_status", "status"),
        sa.Index("ix_inbox_received_at", "received_at"),
    )
    sa.Table(
        "out_queue",
        metadata,
        sa.Column("id", sa.String(_KEY), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("alert", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parts_done", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Index("ix_out_queue_status", "status", "seq"),
    )
    sa.Table(
        # Composite actions of bulk rows: how many parts reached the customer (the row's
        # own status lives in the ledger's out_rows).
        "out_row_parts",
        metadata,
        sa.Column("job", sa.String(128), primary_key=True),
        sa.Column("recipient", sa.String(128), primary_key=True),
        sa.Column("parts_done", sa.Integer, nullable=False),
    )
    return dict(metadata.tables)


_INBOX_COLUMNS = ["key", "status", "received_at", "handled_at", "payload"]
_QUEUE_COLUMNS = [
    "id",
    "seq",
    "priority",
    "alert",
    "status",
    "parts_done",
    "reason",
    "created_at",
    "updated_at",
    "action",
]

# -- events as JSON (the inbox must rebuild them after a restart) ----------------------------


def _contact(c: Contact | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"id": c.id, "name": c.name, "alias": c.alias, "is_friend": c.is_friend}


def _room(r: Room | None) -> dict[str, Any] | None:
    return None if r is None else {"id": r.id, "topic": r.topic, "member_count": r.member_count}


def event_to_json(event: Event) -> str:
    return json.dumps(clean_event(event)[1], ensure_ascii=False)


def clean_event(event: Event) -> tuple[Event, dict[str, Any]]:
    """The event with every string storable (lone surrogates escaped), and its JSON form.
    The same event object when nothing needed cleaning (the usual case)."""
    data = _event_dict(event)
    kinds: dict[str, str] = {}
    cleaned = clean_value(data, "", kinds)
    assert isinstance(cleaned, dict)
    if not kinds:
        return event, data
    return _event_from_dict(cleaned), cleaned


def _event_dict(event: Event) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": event.kind, "ts": event.timestamp.isoformat()}
    if isinstance(event, Message):
        data.update(
            id=event.id,
            sender=_contact(event.sender),
            text=event.text,
            room=_room(event.room),
            type=event.type.value,
            mentions=list(event.mentions),
            mentions_self=event.mentions_self,
            url=event.url,
        )
    elif isinstance(event, FriendRequest):
        data.update(id=event.id, contact=_contact(event.contact), hello=event.hello)
    elif isinstance(event, MemberJoined | MemberLeft):
        other = event.inviter if isinstance(event, MemberJoined) else event.remover
        data.update(
            id=event.id,
            room=_room(event.room),
            members=[_contact(m) for m in event.members],
            other=_contact(other),
        )
    else:
        data.update(
            id=event.id,
            chat_id=event.chat_id,
            room=_room(event.room),
            sender=_contact(event.sender),
        )
    return data


def _c(d: dict[str, Any] | None) -> Contact | None:
    return None if d is None else Contact(**d)


def _r(d: dict[str, Any] | None) -> Room | None:
    return None if d is None else Room(**d)


def event_from_json(text: str) -> Event:
    return _event_from_dict(json.loads(text))


def _event_from_dict(d: dict[str, Any]) -> Event:
    ts = datetime.fromisoformat(d["ts"])
    kind = d["kind"]
    if kind == Message.kind:
        sender = _c(d["sender"])
        assert sender is not None
        return Message(
            id=d["id"],
            sender=sender,
            text=d["text"],
            timestamp=ts,
            room=_r(d["room"]),
            type=MessageType(d["type"]),
            mentions=tuple(d["mentions"]),
            mentions_self=d["mentions_self"],
            url=d["url"],
        )
    if kind == FriendRequest.kind:
        contact = _c(d["contact"])
        assert contact is not None
        return FriendRequest(d["id"], contact, d["hello"], ts)
    if kind in (MemberJoined.kind, MemberLeft.kind):
        room = _r(d["room"])
        assert room is not None
        members = tuple(m for m in (_c(x) for x in d["members"]) if m is not None)
        if kind == MemberJoined.kind:
            return MemberJoined(room, members, ts, inviter=_c(d["other"]), id=d["id"])
        return MemberLeft(room, members, ts, remover=_c(d["other"]), id=d["id"])
    if kind == HumanTakeover.kind:
        return HumanTakeover(
            d["chat_id"], ts, id=d["id"], room=_r(d["room"]), sender=_c(d["sender"])
        )
    raise ValueError(f"unknown event kind {kind!r}")


# -- the inbox ----------------------------------------------------------------------------------


class Inbox:
    def __init__(self, sql: SqlStore) -> None:
        self.sql = sql
        t = define_tables(sql.metadata)
        sql.metadata.create_all(sql.engine, tables=[t["inbox"], t["out_queue"], t["out_row_parts"]])
        self.table = t["inbox"]
        c = self.table.c
        seen = sql.seen_messages_table.c
        self._q_known = sql.prepare(
            sa.union_all(
                sa.select(c.key).where(c.key == sa.bindparam("k")),
                sa.select(seen.msg_id).where(seen.msg_id == sa.bindparam("k")),
            ).limit(1)
        )
        self._q_insert = sql.prepare(sa.insert(self.table), _INBOX_COLUMNS)
        self._q_handled = sql.prepare(
            sa.update(self.table)
            .where(c.key == sa.bindparam("k"))
            # The payload (message text) is only kept until the event is handled.
            .values(
                status=InboxStatus.HANDLED.value,
                handled_at=sa.bindparam("at"),
                payload=sa.bindparam("empty"),
            )
        )
        self._pending: set[str] = set()  # journaled, not yet committed
        self._rows: dict[str, dict[str, Any]] = {}  # their rows, still to be inserted

    @staticmethod
    def key_of(event: Event) -> str:
        ident = event.id or "~" + uuid.uuid4().hex  # no id from the transport: never a dup
        return safe_key(f"{event.kind}:{ident}")

    def known(self, key: str) -> bool:
        """Already received (handled, stale, or in hand): a redelivery to drop."""
        if key in self._pending:
            return True
        # Ids recorded by versions before the inbox count too (until they are pruned).
        return self.sql.reader.first(self._q_known, {"k": key}) is not None

    def received(
        self,
        key: str,
        event: Event,
        at: float,
        *,
        stale: bool,
        payload: dict[str, Any] | None = None,
    ) -> None:
        status = InboxStatus.STALE if stale else InboxStatus.RECEIVED
        row = {
            "key": key,
            "status": status.value,
            "received_at": at,
            "handled_at": None,
            "payload": ""
            if stale
            else json.dumps(payload or clean_event(event)[1], ensure_ascii=False),
        }
        self._pending.add(key)
        self._rows[key] = row

        def done() -> None:
            self._pending.discard(key)
            self._rows.pop(key, None)

        self.sql.defer_row("inbox received", self._q_insert, row, done, urgent=True)

    def handled(self, key: str, at: float) -> None:
        row = self._rows.get(key)
        if row is not None:
            # Not committed yet: it is written as handled in the same transaction as what
            # its handlers queued and stored (one statement fewer, too).
            row.update(status=InboxStatus.HANDLED.value, handled_at=at, payload="")
            return
        self.sql.defer_row("inbox handled", self._q_handled, {"k": key, "at": at, "empty": ""})

    def unhandled(self) -> list[tuple[str, float, str]]:
        """(key, received_at, payload) of events received but not handled, oldest first."""
        c = self.table.c
        with self.sql.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.key, c.received_at, c.payload)
                .where(c.status == InboxStatus.RECEIVED.value)
                .order_by(c.received_at)
            ).all()
        return [(str(k), float(a), str(p)) for k, a, p in rows]

    def mark_stale(self, key: str, at: float) -> None:
        c = self.table.c

        def run(conn: sa.Connection) -> None:
            conn.execute(
                sa.update(self.table)
                .where(c.key == key)
                .values(status=InboxStatus.STALE.value, handled_at=at)
            )

        self.sql.defer("inbox stale", run)

    def erase(self, contact_id: str) -> int:
        """Data-rights erasure: journal rows that mention the contact (unhandled events,
        queued or finished actions to them). Returns how many were deleted."""
        self.sql.flush()
        pattern = (
            "%" + contact_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        queue = self.sql.metadata.tables["out_queue"]
        with self.sql.engine.begin() as conn:
            n = conn.execute(
                sa.delete(self.table).where(self.table.c.payload.like(pattern, escape="\\"))
            ).rowcount
            n += conn.execute(
                sa.delete(queue).where(queue.c.action.like(pattern, escape="\\"))
            ).rowcount
        return int(n)

    def counts(self) -> dict[str, int]:
        c = self.table.c
        with self.sql.engine.connect() as conn:
            rows = conn.execute(sa.select(c.status, sa.func.count()).group_by(c.status)).all()
        return {str(s): int(n) for s, n in rows}

    def prune(self, older_than: float) -> int:
        """Forget handled and stale events received before `older_than` (epoch seconds)."""
        c = self.table.c
        with self.sql.engine.begin() as conn:
            result = conn.execute(
                sa.delete(self.table).where(
                    c.received_at < older_than, c.status != InboxStatus.RECEIVED.value
                )
            )
        return int(result.rowcount)


# -- the outbox queue ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedRow:
    id: str
    seq: int
    priority: int
    alert: bool
    status: QueueStatus
    parts_done: int
    reason: str
    created_at: float
    updated_at: float
    action: Action


class OutQueue:
    """Actions that are not bulk rows (replies, service notices, alerts, single sends)."""

    def __init__(self, sql: SqlStore) -> None:
        self.sql = sql
        t = define_tables(sql.metadata)
        self.table = t["out_queue"]
        self.row_parts = t["out_row_parts"]
        c = self.table.c
        self._q_insert = sql.prepare(sa.insert(self.table), _QUEUE_COLUMNS)
        self._rows: dict[str, dict[str, Any]] = {}  # queued rows still to be inserted
        status = (
            sa.update(self.table)
            .where(c.id == sa.bindparam("b_id"))
            .values(
                status=sa.bindparam("b_status"),
                reason=sa.bindparam("b_reason"),
                parts_done=sa.bindparam("b_parts"),
                updated_at=sa.bindparam("b_at"),
            )
        )
        self._q_status = sql.prepare(status)
        self._q_final = sql.prepare(status.values(action=sa.bindparam("b_action")))

    def add(
        self,
        qid: str,
        seq: int,
        priority: int,
        alert: bool,
        action: Action,
        at: float,
        done: Callable[[], None],
    ) -> None:
        row = {
            "id": qid,
            "seq": seq,
            "priority": priority,
            "alert": alert,
            "status": QueueStatus.QUEUED.value,
            "parts_done": 0,
            "reason": "",
            "created_at": at,
            "updated_at": at,
            "action": clean_text(action_to_json(action)),
        }

        self._rows[qid] = row

        def committed() -> None:
            self._rows.pop(qid, None)
            done()

        self.sql.defer_row("outbox queued", self._q_insert, row, committed)

    def set_status(
        self,
        qid: str,
        status: QueueStatus,
        at: float,
        *,
        reason: str = "",
        parts_done: int = 0,
        finished: Action | None = None,
    ) -> None:
        """Deferred to the next group commit (use `sending` for the durable-now mark).
        `finished`: the action reached a final status; its text and media are dropped from
        the row (the row stays for idempotency and the operator's counts, but the message,
        which may quote a customer's phone or address, is not kept longer than needed)."""
        params = self._params(qid, status, at, reason, parts_done)
        statement = self._q_status
        if finished is not None:
            params["b_action"] = action_to_json(dataclasses.replace(finished, text="", media=None))
            statement = self._q_final
        self.sql.defer_row("outbox status", statement, params)

    def sending(self, conn: sa.Connection, qid: str, at: float, parts_done: int) -> None:
        """Inside the transaction that commits before the transport is called (which also
        inserts the row when it is still pending: then it goes in as "sending" at once)."""
        if qid in self._rows:
            return  # see pending_sending()
        self._q_status.execute(conn, [self._params(qid, QueueStatus.SENDING, at, "", parts_done)])

    def pending_sending(self, qid: str, at: float, parts_done: int) -> dict[str, Any] | None:
        """If the row is not inserted yet, make it go in as "sending"; returns what to put
        back should that transaction fail."""
        row = self._rows.get(qid)
        if row is None:
            return None
        before = dict(row)
        row.update(status=QueueStatus.SENDING.value, parts_done=parts_done, updated_at=at)
        return before

    def restore_pending(self, qid: str, row: dict[str, Any]) -> None:
        if qid in self._rows:
            self._rows[qid].update(row)

    @staticmethod
    def _params(
        qid: str, status: QueueStatus, at: float, reason: str, parts_done: int
    ) -> dict[str, Any]:
        return {
            "b_id": qid,
            "b_status": status.value,
            "b_reason": reason[:64],
            "b_parts": parts_done,
            "b_at": at,
        }

    def get(self, qid: str) -> QueuedRow | None:
        with self.sql.engine.connect() as conn:
            row = conn.execute(sa.select(self.table).where(self.table.c.id == qid)).first()
        return None if row is None else self._row(row)

    def rows(self, status: QueueStatus) -> list[QueuedRow]:
        c = self.table.c
        with self.sql.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self.table).where(c.status == status.value).order_by(c.seq)
            ).all()
        return [self._row(r) for r in rows]

    def recover(self, at: float) -> list[QueuedRow]:
        """At start: actions left "sending" become "unknown" (never re-sent)."""
        stuck = self.rows(QueueStatus.SENDING)
        c = self.table.c
        if stuck:
            with self.sql.engine.begin() as conn:
                conn.execute(
                    sa.update(self.table)
                    .where(c.status == QueueStatus.SENDING.value)
                    .values(status=QueueStatus.UNKNOWN.value, reason="crash", updated_at=at)
                )
        return stuck

    def max_seq(self) -> int:
        with self.sql.engine.connect() as conn:
            n = conn.execute(sa.select(sa.func.max(self.table.c.seq))).scalar()
        return int(n or 0)

    def prune(self, older_than: float) -> int:
        c = self.table.c
        final = [s.value for s in (QueueStatus.SENT, QueueStatus.FAILED, QueueStatus.SKIPPED)]
        with self.sql.engine.begin() as conn:
            result = conn.execute(
                sa.delete(self.table).where(c.updated_at < older_than, c.status.in_(final))
            )
        return int(result.rowcount)

    # -- parts of bulk rows --------------------------------------------------------------
    def row_parts_done(self, job: str, recipient: str) -> int:
        c = self.row_parts.c
        with self.sql.engine.connect() as conn:
            n = conn.execute(
                sa.select(c.parts_done).where(c.job == job, c.recipient == recipient)
            ).scalar()
        return int(n or 0)

    def set_row_parts(self, conn: sa.Connection, job: str, recipient: str, done: int) -> None:
        c = self.row_parts.c
        changed = conn.execute(
            sa.update(self.row_parts)
            .where(c.job == job, c.recipient == recipient)
            .values(parts_done=done)
        ).rowcount
        if not changed:
            conn.execute(
                sa.insert(self.row_parts).values(job=job, recipient=recipient, parts_done=done)
            )

    @staticmethod
    def _row(r: sa.Row[Any]) -> QueuedRow:
        return QueuedRow(
            id=r.id,
            seq=int(r.seq),
            priority=int(r.priority),
            alert=bool(r.alert),
            status=QueueStatus(r.status),
            parts_done=int(r.parts_done),
            reason=r.reason,
            created_at=float(r.created_at),
            updated_at=float(r.updated_at),
            action=action_from_json(r.action),
        )
