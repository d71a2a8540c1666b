"""The outbound governor: the only path from plugins to the transport.

Every action is journaled (SQL, group-committed) before it can go: a clean stop leaves the
rest queued and a restart continues them. Before each send, after any wait, the checks run
again: opt-out and marketing frequency (skip), breaker and quiet hours (defer), pacing per
lane (wait), daily caps (counted durably *before* the action) and a durable "sending" mark
per part in the same transaction, so a crash can never cause a silent resend: what was
mid-send at a crash becomes "unknown" and is listed for the operator.

Composite actions (text + image, a card with text) go out part by part; each part is at
most once, and a failure of part 2 never re-sends part 1 (the record says which parts
reached the customer). Pacing runs on the monotonic clock (pond/pacing.py); the wall clock
decides quiet hours, day boundaries and deferrals to a calendar time only."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from pond.actions import Action, ActionClass, ActionKind
from pond.clock import Clock, FakeClock
from pond.config import OutboxSettings
from pond.journal import CURRENT_ORIGIN, OutQueue, QueuedRow, QueueStatus, new_action_id
from pond.ledger import BulkRow, JobStatus, Ledger, RowStatus
from pond.pacing import Lane, Pacer, lane_of
from pond.store import Namespace
from pond.transports.base import Transport, TransportError

log = logging.getLogger("pond.outbox")

_PRIORITY = {
    ActionClass.REPLY: 1,
    ActionClass.SERVICE: 2,
    ActionClass.MARKETING: 3,
}
ALERT_PRIORITY = 0
BULK_PRIORITY = 10
CLOCK_STEP_S = 60.0
# Deferrals are compared with a little slack: next_due() converts monotonic times to wall
# epoch seconds and back, which loses precision, and a clock moved to "due" must find it due.
_EPSILON = 1e-3  # a wall-clock jump larger than this is logged and alerted
_FINAL_STATUS = {
    "sent": QueueStatus.SENT,
    "failed": QueueStatus.FAILED,
    "skipped": QueueStatus.SKIPPED,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # sent | skipped | failed
    reason: str = ""


@dataclass(slots=True)
class _Item:
    action: Action
    priority: int
    seq: int
    queued_mono: float  # for the typing delay
    qid: str = ""
    # Its queue row is committed: at the latest by the transaction that marks it "sending"
    # (that one commits the whole pending batch first), so nothing leaves undecided.
    durable: bool = False
    not_before: float = 0.0  # wall epoch: calendar deferrals (quiet hours, next day, breaker)
    ready_mono: float = 0.0  # monotonic: relative deferrals (offline, storage, retry)
    future: asyncio.Future[Outcome] | None = None
    row: BulkRow | None = None
    alert: bool = False
    deferred_for: str = ""
    parts_done: int = 0
    lane: Lane = Lane.SERVICE


def parts_of(action: Action, atomic_media: bool = False) -> list[Action]:
    """A send with text and media is two messages on WeChat: text, then the media. A
    transport that delivers both in one call says so with `atomic_media = True`."""
    if (
        action.kind is ActionKind.SEND
        and action.text
        and action.media is not None
        and not atomic_media
    ):
        return [replace(action, media=None), replace(action, text="", mentions=())]
    return [action]


class Outbox:
    def __init__(
        self,
        transport: Transport,
        clock: Clock,
        settings: OutboxSettings,
        ledger: Ledger,
        state: Namespace,
        *,
        queue: OutQueue,
        record: Callable[[str, dict[str, Any]], None] = lambda kind, data: None,
        rng: random.Random | None = None,
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.settings = settings
        self.ledger = ledger
        self.state = state
        self.queue = queue
        self.record = record
        self.rng = rng or random.Random()
        self.alert: Callable[[str, dict[str, Any]], None] = lambda key, data: None
        self.on_error: Callable[[Exception], None] = lambda error: None
        # True while the operator paused everything: bulk rows and non-reply, non-alert
        # actions stay queued (not picked, not deferred) until it turns False again.
        self.hold: Callable[[], bool] = lambda: False
        self._items: list[_Item] = []
        self._seq = itertools.count(queue.max_seq() + 1)
        self.pacer = Pacer(settings, self.rng, clock.monotonic())
        self._job_not_before: dict[str, float] = {}
        self._bulk_head: _Item | None = None
        self._wake = asyncio.Event()
        self._cap_alerted: set[tuple[str, str]] = set()
        self._offset = self._wall_offset()
        self._storage_failing = False
        self.paused = False

    # -- time helpers -----------------------------------------------------------------
    def _ts(self) -> float:
        return self.clock.now().timestamp()

    def _mono(self) -> float:
        return self.clock.monotonic()

    def _day(self) -> str:
        return self.clock.now().date().isoformat()

    def _wall_offset(self) -> float:
        return self._ts() - self._mono()

    def _check_clock(self) -> None:
        """A wall-clock step (NTP, VM resume) is logged and alerted; pacing never notices."""
        offset = self._wall_offset()
        step = offset - self._offset
        if abs(step) <= CLOCK_STEP_S:
            return
        self._offset = offset
        log.warning("the wall clock jumped by %+.0f s; pacing is unaffected", step)
        self.record("clock.step", {"seconds": round(step)})
        self.alert("core/clock_alert", {"seconds": round(step)})

    # -- submitting ---------------------------------------------------------------------
    def submit(self, action: Action) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._push(action, _PRIORITY[action.cls], future=future)
        return future

    def submit_alert(self, action: Action) -> None:
        """Operator alerts: paced and capped like everything else, but neither quiet hours
        nor the breaker hold them, since they are how the operator learns of the breaker."""
        self._push(action, ALERT_PRIORITY, alert=True)

    def _push(
        self,
        action: Action,
        priority: int,
        *,
        future: asyncio.Future[Outcome] | None = None,
        alert: bool = False,
    ) -> None:
        origin = CURRENT_ORIGIN.get()
        qid = origin.next_id() if origin is not None else new_action_id()
        if origin is not None and origin.replay and self._replayed(qid, future):
            return  # queued by the first handling of this event, before a crash
        item = _Item(
            action,
            priority,
            next(self._seq),
            self._mono(),
            qid=qid,
            future=future,
            alert=alert,
            lane=lane_of(action, alert=alert),
        )
        self.queue.add(
            qid, item.seq, priority, alert, action, self._ts(), lambda: self._durable(item)
        )
        self._items.append(item)
        self.record("out.queued", {**_summary(action)})
        self._wake.set()

    def _durable(self, item: _Item) -> None:
        item.durable = True
        self._wake.set()

    def _replayed(self, qid: str, future: asyncio.Future[Outcome] | None) -> bool:
        for item in self._items:
            if item.qid == qid:
                if future is not None:
                    if item.future is None:
                        item.future = future
                    else:
                        item.future.add_done_callback(lambda f: _copy(f, future))
                return True
        row = self.queue.get(qid)
        if row is None:
            return False
        if future is not None:
            future.set_result(Outcome(_outcome_status(row.status), row.reason or row.status.value))
        return True

    def enqueue_bulk(self, job: str, actions: Sequence[Action], meta: Any = None) -> int:
        """Journal a bulk job (one row per recipient); the worker sends it at-most-once."""
        for action in actions:
            if action.job != job:
                raise ValueError(f"action for {action.to} is not part of job {job}")
        added = self.ledger.create_job(job, actions, self._ts(), meta)
        self.record("job.created", {"job": job, "rows": added})
        self._wake.set()
        return added

    def set_job_status(self, job: str, status: JobStatus) -> None:
        self.ledger.set_job_status(job, status)
        self.record("job.status", {"job": job, "status": status.value})
        self._wake.set()

    def recover(self) -> list[BulkRow]:
        """At start-up: what was mid-send when we died becomes "unknown" (bulk rows in
        their job; other actions as rows of an "unknown:" job, so the operator's review
        lists them the same way); what was queued is queued again."""
        now = self._ts()
        stuck = self.ledger.recover(now)
        for row in stuck:
            self.record("out.unknown", {"job": row.job, "to": row.recipient})
        lost = self.queue.recover(now)
        for q in lost:
            self._list_unknown(q, now)
        for q in self.queue.rows(QueueStatus.QUEUED):
            self._items.append(
                _Item(
                    q.action,
                    q.priority,
                    q.seq,
                    self._mono(),
                    qid=q.id,
                    durable=True,
                    alert=q.alert,
                    parts_done=q.parts_done,
                    lane=lane_of(q.action, alert=q.alert),
                )
            )
        count = len(stuck) + len(lost)
        if count:
            log.warning("%d deliveries were in flight at the last stop: unknown", count)
            self.alert("core/unknown_alert", {"count": count})
        if self._items:
            log.info("%d queued actions continue from the last run", len(self._items))
        return stuck

    def _list_unknown(self, q: QueuedRow, now: float) -> None:
        # Parts went out already: it was sent in parts (whatever today's transport says).
        parts = len(parts_of(q.action) if q.parts_done else self._parts(q.action))
        job = ("unknown:" + q.id)[:128]
        action = replace(q.action, job=job)
        self.ledger.create_job(
            job, [action], now, {"origin": q.id, "parts_sent": q.parts_done, "parts": parts}
        )
        reason = f"crash: {q.parts_done}/{parts} parts sent" if parts > 1 else "crash"
        self.ledger.mark(job, action.to, RowStatus.UNKNOWN, now, reason=reason)
        if q.parts_done:  # parts that surely arrived: an operator's "resend" skips them
            with self.queue.sql.engine.begin() as conn:
                self.queue.set_row_parts(conn, job, action.to, q.parts_done)
        self.ledger.set_job_status(job, JobStatus.DONE)
        self.record(
            "out.unknown",
            {**_summary(q.action), "parts_sent": q.parts_done, "parts": parts},
        )

    # -- opt-out ---------------------------------------------------------------------------
    def opt_out(self, contact_id: str, source: str) -> bool:
        new = self.ledger.set_opt_out(contact_id, self._ts(), source)
        self.record("contact.opt_out", {"contact_id": contact_id, "source": source, "new": new})
        return new

    def opt_in(self, contact_id: str) -> bool:
        cleared = self.ledger.clear_opt_out(contact_id)
        self.record("contact.opt_in", {"contact_id": contact_id, "cleared": cleared})
        return cleared

    # -- breaker -----------------------------------------------------------------------------
    @property
    def breaker_until(self) -> float:
        return self.state.get_float("breaker_until")

    def breaker_open(self) -> bool:
        return self._ts() < self.breaker_until

    def _trip_breaker(self, reason: str) -> None:
        trips = self.state.get_int("breaker_trips") + 1
        # A repeat trip while recently throttled doubles the pause.
        last_until = self.breaker_until
        if last_until and self._ts() - last_until > 24 * 3600:
            trips = 1
        minutes = self.settings.breaker_cooldown_min * (2 ** (trips - 1))
        until = self._ts() + minutes * 60
        self.state.set("breaker_until", until)
        self.state.set("breaker_trips", trips)
        log.warning("breaker tripped (%s): non-reply actions stop for %.0f min", reason, minutes)
        self.record("breaker.trip", {"reason": reason, "minutes": minutes, "trips": trips})
        self.alert(
            "core/breaker_alert",
            {"minutes": int(minutes), "until": _clock_text(self.clock, until), "trips": trips},
        )

    def _is_throttle(self, error: TransportError) -> bool:
        text = str(error)
        return error.throttled or any(p and p in text for p in self.settings.breaker_patterns)

    # -- choosing the next item ------------------------------------------------------------------
    def has_ready(self) -> bool:
        return bool(self._candidates())

    def _holdable(self, item: _Item) -> bool:
        return not item.alert and item.action.cls is not ActionClass.REPLY

    def next_due(self) -> float | None:
        """Earliest moment (wall epoch seconds) deferred or paced work becomes ready."""
        hold = self.hold()
        now, mono = self._ts(), self._mono()
        times: list[float] = []
        for i in self._items:
            if hold and self._holdable(i):
                continue
            ready = max(i.not_before, now + i.ready_mono - mono)
            if i.lane is Lane.MARKETING:
                ready = max(ready, now + self.pacer.paused_until(Lane.MARKETING) - mono)
            times.append(ready)
        if not hold:
            active = self.ledger.active_jobs()
            pause = now + self.pacer.paused_until(Lane.MARKETING) - mono
            times += [max(self._job_not_before.get(job, 0.0), pause) for job in active]
        return min(times) if times else None

    def _candidates(self) -> list[_Item]:
        """The head of each lane that is ready (deferrals over), most urgent first."""
        if self.paused:
            return []
        now, mono = self._ts(), self._mono()
        hold = self.hold()  # "pause everything": held work is parked, not deferred
        heads: dict[Lane, _Item] = {}
        for i in self._items:
            if i.not_before > now or i.ready_mono > mono + _EPSILON:
                continue
            if hold and self._holdable(i):
                continue
            best = heads.get(i.lane)
            if best is None or (i.priority, i.seq) < (best.priority, best.seq):
                heads[i.lane] = i
        found = list(heads.values())
        if not hold and Lane.MARKETING not in heads:
            bulk = self._next_bulk(now)
            if bulk is not None:
                found.append(bulk)
        return sorted(found, key=lambda i: (i.priority, i.seq))

    def _next_bulk(self, now: float) -> _Item | None:
        for job in self.ledger.active_jobs():
            if self._job_not_before.get(job, 0.0) > now:
                continue
            rows = self.ledger.pending(job, limit=1)
            if not rows:
                self.ledger.set_job_status(job, JobStatus.DONE)
                self.record("job.done", {"job": job, **self.ledger.summary(job)})
                continue
            row = rows[0]
            head = self._bulk_head
            if head is not None and head.row is not None and _same_row(head.row, row):
                return head  # the same row waiting out its pacing: keep its clock
            done = self.queue.row_parts_done(job, row.recipient) if row.action.media else 0
            self._bulk_head = _Item(
                row.action,
                BULK_PRIORITY,
                -1,
                self._mono(),
                durable=True,
                row=row,
                parts_done=done,
                lane=Lane.MARKETING,
            )
            return self._bulk_head
        return None

    def _commit(self) -> None:
        """No action leaves before the batch that queued it is committed."""
        sql = self.queue.sql
        if not sql.dirty:
            return
        try:
            sql.flush()
        except (SQLAlchemyError, OSError) as error:
            if not self._storage_failing:
                log.error("cannot commit the journal (%s): holding actions", _storage_error(error))
            self._storage_failing = True
        else:
            self._storage_failing = False

    async def step(self) -> bool:
        """Perform (or skip, or defer) the most urgent item, waiting out its pacing first;
        False when nothing is ready. Every check runs again after a wait."""
        self._check_clock()
        while True:
            chosen = self._choose(self._candidates(), self._mono())
            if chosen is None:
                if not self.queue.sql.committer_running:
                    self._commit()  # idle, and nobody else commits: make it durable now
                return False
            item, wait = chosen
            if wait <= 1e-6:  # floating-point dust: a nap that short would not move time
                break
            await self._nap(wait)
        if item.row is None:
            self._items.remove(item)
        work = asyncio.ensure_future(self._process(item))
        try:
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                # A clean stop (or the stop's grace running out) must not cut a send in
                # half: the part in flight finishes and is journaled, then the stop goes on.
                # Cut here, it would be "sending" at the next start: unknown, never sent.
                await asyncio.wait([work])
                raise
        except Exception as error:
            # A bug here must not stop the one worker; the item is failed, never retried
            # blindly (a row left "sending" becomes "unknown" at the next start).
            log.error("outbox failed on %s: %s", item.action.describe(), type(error).__name__)
            if item.future is not None and not item.future.done():
                item.future.set_result(Outcome("failed", "internal"))
            self.on_error(error)
        return True

    def _choose(self, candidates: list[_Item], mono: float) -> tuple[_Item, float] | None:
        """The most urgent lane head and how long its pacing wants it to wait. A bulk
        pause is a deferral (see next_due), never a wait that holds another lane."""
        if self.pacer.paused_until(Lane.MARKETING) > mono + _EPSILON:
            candidates = [c for c in candidates if c.lane is not Lane.MARKETING]
        if not candidates:
            return None
        item = min(candidates, key=lambda i: (i.priority, i.seq))
        return item, self._wait(item, mono)

    def _parts(self, action: Action) -> list[Action]:
        return parts_of(action, bool(getattr(self.transport, "atomic_media", False)))

    def _wait(self, item: _Item, mono: float) -> float:
        return self.pacer.wait(item.action, item.lane, mono, item.queued_mono)

    async def _nap(self, seconds: float) -> None:
        """Wait for pacing; new work (a reply arriving) cuts the wait short."""
        if isinstance(self.clock, FakeClock):  # simulated time: the sleep is instant
            await self.clock.sleep(seconds)
            return
        self._wake.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([sleeper, waker], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _process(self, item: _Item) -> None:
        action = item.action
        now = self._ts()
        cls = action.cls
        held = not item.alert and cls is not ActionClass.REPLY

        if cls is ActionClass.MARKETING and action.contact_id:
            if self.ledger.is_opted_out(action.contact_id):
                return self._finish(item, Outcome("skipped", "opt_out"))
            last = self.ledger.last_marketing(action.contact_id)
            interval = self.settings.marketing_min_interval_h * 3600
            if last is not None and now - last < interval and item.parts_done == 0:
                return self._finish(item, Outcome("skipped", "frequency"))
        if held and self.breaker_open():
            return self._defer(item, self.breaker_until, "breaker")
        if cls is ActionClass.MARKETING and self.settings.quiet_hours.contains(
            self.clock.now().time()
        ):
            return self._defer(item, self._quiet_end(), "quiet_hours")
        if not self.transport.connected:
            return self._defer_for(item, self._retry_s(), "offline")

        limits = self._limits(action) if item.parts_done == 0 else {}
        day = self._day()
        parts = self._parts(action)
        try:
            capped = self._mark_sending(item, day, limits, item.parts_done, first=True)
        except (SQLAlchemyError, OSError) as error:
            # Disk full, database locked: without a durable count and mark there is no
            # send. Hold the action and try again; nothing is lost, no cap exceeded.
            log.error(
                "cannot count %s against the daily cap (%s): holding it",
                action.describe(),
                _storage_error(error),
            )
            return self._defer_for(item, self._retry_s(), "storage")
        if capped is not None:
            if capped == "_taken":
                return  # cancelled or taken meanwhile
            if item.row is not None:
                return self._defer(item, self._next_day(), f"cap:{capped}")
            self._cap_alert(capped)
            return self._finish(item, Outcome("skipped", f"cap:{capped}"))
        outcome = Outcome("sent")
        start = item.parts_done
        for n in range(start, len(parts)):
            if n > start:  # the first part's mark went with the cap reservation
                try:
                    self._mark_sending(item, day, {}, n, first=False)
                except (SQLAlchemyError, OSError) as error:
                    log.error(
                        "cannot mark part %d of %s (%s)",
                        n + 1,
                        action.describe(),
                        _storage_error(error),
                    )
                    outcome = Outcome("failed", "offline")
                    break
            outcome = await self._perform(item, parts[n])
            if outcome.status != "sent":
                break
            item.parts_done = n + 1
        self._note_performed(item)
        if outcome.status == "sent":
            return self._finish(item, outcome)
        if len(parts) > 1 and item.parts_done:
            outcome = Outcome(
                outcome.status, f"{outcome.reason} after {item.parts_done}/{len(parts)} parts"
            )
            if not outcome.reason.startswith(("throttled", "offline")):
                return self._finish(item, outcome)
        elif outcome.reason not in {"throttled", "offline"}:
            return self._finish(item, outcome)
        # Refused by the platform, or never attempted: the slot was not used, and it is
        # safe to try again later (from the part that did not go).
        if item.parts_done == 0:
            self.ledger.release(day, self._limits(action))
        reason = outcome.reason.split(" ")[0]
        if reason in ("offline", "throttled"):
            if item.row is not None:
                self.ledger.mark(
                    item.row.job,
                    item.row.recipient,
                    RowStatus.PENDING,
                    self._ts(),
                    reason=reason,
                    expect=RowStatus.SENDING,
                )
            else:
                self.queue.set_status(
                    item.qid,
                    QueueStatus.QUEUED,
                    self._ts(),
                    reason=reason,
                    parts_done=item.parts_done,
                )
            if reason == "throttled" and held:
                return self._defer(item, self.breaker_until, reason)
            # A reply refused as too frequent is not dropped: it tries again shortly
            # (the breaker holds everything else meanwhile).
            return self._defer_for(item, self._retry_s(), reason)
        return self._finish(item, outcome)

    def _mark_sending(
        self, item: _Item, day: str, limits: dict[str, int], part: int, *, first: bool
    ) -> str | None:
        """One transaction, committed before the transport is called: the pending journal
        batch, the cap reservation (first part) and the durable "sending" mark."""

        def run(conn: sa.Connection) -> str | None:
            if limits:
                capped = self.ledger.reserve_in(conn, day, limits)
                if capped is not None:
                    return capped
            now = self._ts()
            if item.row is not None:
                row = item.row
                sending, pending = RowStatus.SENDING, RowStatus.PENDING
                if first and not self.ledger.mark_in(
                    conn, row.job, row.recipient, sending, now, expect=pending
                ):
                    raise _Taken()
                if len(self._parts(item.action)) > 1:
                    self.queue.set_row_parts(conn, row.job, row.recipient, part)
            else:
                self.queue.sending(conn, item.qid, now, part)
            return None

        restore = (
            None if item.row is not None else self.queue.pending_sending(item.qid, self._ts(), part)
        )
        try:
            result: str | None = self.queue.sql.flush(run)
        except BaseException as error:
            if restore is not None:
                self.queue.restore_pending(item.qid, restore)
            if isinstance(error, _Taken):
                return "_taken"
            raise
        if result is not None and restore is not None:  # capped: it did not go
            self.queue.set_status(item.qid, QueueStatus.QUEUED, self._ts())
        return result

    async def _perform(self, item: _Item, part: Action) -> Outcome:
        for attempt in (1, 2):
            try:
                await self.transport.perform(part)
            except TransportError as error:
                if error.refused:  # not attempted: the platform's rules say no
                    return Outcome("skipped", error.refused)
                if error.offline:
                    return Outcome("failed", "offline")
                if self._is_throttle(error):
                    self._trip_breaker(type(error).__name__)
                    return Outcome("failed", "throttled")
                if error.gone:  # they deleted the account: recorded for the customer book
                    return Outcome("failed", "not_friend")
                log.warning(
                    "action failed (%s), attempt %d: %s",
                    part.describe(),
                    attempt,
                    type(error).__name__,
                )
                if attempt == 1 and error.retryable:
                    await self.clock.sleep(self.settings.retry_backoff_s)
                    continue
                return Outcome("failed", "transport")
            break
        return Outcome("sent")

    def _note_performed(self, item: _Item) -> None:
        if item.parts_done == 0:
            return
        self.pacer.performed(item.action, item.lane, self._mono(), bulk=item.row is not None)
        if item.action.cls is ActionClass.MARKETING and item.action.contact_id:
            self.ledger.note_marketing(item.action.contact_id, self._ts())

    def _finish(self, item: _Item, outcome: Outcome) -> None:
        action = item.action
        now = self._ts()
        if item.row is not None:
            status = {
                "sent": RowStatus.SENT,
                "failed": RowStatus.FAILED,
                "skipped": RowStatus.SKIPPED,
            }[outcome.status]
            self.ledger.mark(item.row.job, item.row.recipient, status, now, outcome.reason)
        else:
            self.queue.set_status(
                item.qid,
                _FINAL_STATUS[outcome.status],
                now,
                reason=outcome.reason,
                parts_done=item.parts_done,
                finished=action,
            )
        if item.future is not None and not item.future.done():
            item.future.set_result(outcome)
        data = {**_summary(action), "reason": outcome.reason}
        parts = len(self._parts(action))
        if parts > 1:
            data.update(parts=parts, parts_sent=item.parts_done)
        self.record(f"out.{outcome.status}", data)
        if outcome.status != "sent":
            log.info("%s: %s %s", outcome.status, action.describe(), outcome.reason)

    def _defer(self, item: _Item, until: float, reason: str) -> None:
        """Until a wall-clock time (quiet hours end, next day, breaker end)."""
        if item.row is not None:
            self._job_not_before[item.row.job] = until
        else:
            item.not_before = until
            self._items.append(item)
        self._note_deferred(item, reason, until)

    def _defer_for(self, item: _Item, seconds: float, reason: str) -> None:
        """For a while (offline, storage trouble): monotonic, immune to clock steps."""
        if item.row is not None:
            self._job_not_before[item.row.job] = self._ts() + seconds
        else:
            item.ready_mono = self._mono() + seconds
            self._items.append(item)
        self._note_deferred(item, reason, self._ts() + seconds)

    def _note_deferred(self, item: _Item, reason: str, until: float) -> None:
        if item.deferred_for != reason:  # one record per reason, not one per retry
            item.deferred_for = reason
            self.record("out.deferred", {**_summary(item.action), "reason": reason, "until": until})

    # -- policy pieces ----------------------------------------------------------------------
    def _limits(self, action: Action) -> dict[str, int]:
        s = self.settings
        caps = {
            ActionKind.SEND: s.cap_send,
            ActionKind.ACCEPT_FRIEND: s.cap_accept_friend,
            ActionKind.ADD_FRIEND: s.cap_add_friend,
            ActionKind.INVITE: s.cap_invite,
            ActionKind.KICK: s.cap_kick,
            ActionKind.POST: s.cap_post,
            ActionKind.TAG: s.cap_tag,
        }
        limits = {action.kind.value: caps[action.kind]}
        if action.is_bulk:
            limits["broadcast"] = s.cap_broadcast
        return limits

    def _quiet_end(self) -> float:
        window = self.settings.quiet_hours
        now = self.clock.now()
        end = now.replace(hour=window.end.hour, minute=window.end.minute, second=0, microsecond=0)
        if end <= now:
            end += timedelta(days=1)
        return end.timestamp()

    def _retry_s(self) -> float:
        return max(1.0, self.settings.retry_backoff_s)

    def _next_day(self) -> float:
        now = self.clock.now()
        start = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        return start.timestamp() + 60.0

    def _cap_alert(self, kind: str) -> None:
        key = (self._day(), kind)
        log.warning("daily cap reached for %s", kind)
        if key not in self._cap_alerted:
            self._cap_alerted.add(key)
            self.alert("core/cap_alert", {"kind": kind})

    # -- running ------------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    async def drain(self, *, jump: bool = False, limit: int = 100_000) -> int:
        """Process everything ready now (tests, console scripts, shutdown). With jump=True and
        a clock that can be moved (FakeClock), also move time forward to deferred work."""
        done = 0
        while done < limit:
            if await self.step():
                done += 1
                continue
            due = self.next_due()
            if not jump or due is None:
                break
            await self.clock.sleep(max(0.0, due - self._ts()))
        return done

    async def close(self, grace_s: float) -> int:
        """A clean stop: send what can go within `grace_s` (monotonic), leave the rest
        queued in the journal for the next start. Returns how many items were handled."""
        end = self._mono() + grace_s
        done = 0
        while self.transport.connected and self._mono() < end:
            try:
                async with asyncio.timeout(max(0.0, end - self._mono())):
                    if not await self.step():
                        break
            except TimeoutError:
                break
            done += 1
        self._commit()
        left = len(self._items)
        if left:
            log.info("%d queued actions left for the next start", left)
        return done

    async def run(self) -> None:
        while True:
            if await self.step():
                continue
            self._wake.clear()
            due = self.next_due()
            timeout = 60.0 if due is None else min(60.0, max(0.05, due - self._ts()))
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # lands in the same step as a wake-up, and stop() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def pending_count(self) -> int:
        return len(self._items)

    def forget(self, contact_id: str) -> int:
        """Drop queued (not bulk) actions to or about a contact: data-rights deletion.
        Their futures resolve as skipped "erased". Returns how many were dropped."""
        gone = [
            i
            for i in self._items
            if contact_id in (i.action.to, i.action.contact_id, i.action.member_id)
        ]
        for item in gone:
            self._items.remove(item)
            self.queue.set_status(
                item.qid, QueueStatus.SKIPPED, self._ts(), reason="erased", finished=item.action
            )
            if item.future is not None and not item.future.done():
                item.future.set_result(Outcome("skipped", "erased"))
        self.pacer.forget(contact_id)
        return len(gone)


class _Taken(Exception):
    """A bulk row was cancelled or taken meanwhile (its compare-and-set failed)."""


def _copy(source: asyncio.Future[Outcome], target: asyncio.Future[Outcome]) -> None:
    if not target.done() and not source.cancelled():
        target.set_result(source.result())


def _outcome_status(status: QueueStatus) -> str:
    if status in (QueueStatus.SENT, QueueStatus.SKIPPED):
        return status.value
    return "failed"


def _storage_error(error: Exception) -> str:
    return str(getattr(error, "orig", None) or error).splitlines()[0]


def _summary(action: Action) -> dict[str, Any]:
    return {
        "kind": action.kind.value,
        "cls": action.cls.value,
        "to": action.to,
        "key": action.key,
        "plugin": action.plugin,
        "job": action.job,
    }


def _clock_text(clock: Clock, ts: float) -> str:
    return datetime.fromtimestamp(ts, clock.tz).strftime("%H:%M")


def _same_row(a: BulkRow, b: BulkRow) -> bool:
    return (a.job, a.recipient) == (b.job, b.recipient)
