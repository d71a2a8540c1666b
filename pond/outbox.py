"""The outbound governor: the only path from plugins to the transport.

One worker performs one action at a time, in priority order (alerts, replies, service,
marketing; bulk rows last), after the account-safety checks:
opt-out and marketing frequency (skip), breaker and quiet hours (defer), pacing (wait),
daily caps (counted durably *before* the action), and for bulk jobs a durable "sending"
mark before the call so a crash can never cause a silent resend."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from pond.actions import Action, ActionClass, ActionKind
from pond.clock import Clock
from pond.config import OutboxSettings
from pond.ledger import BulkRow, JobStatus, Ledger, RowStatus
from pond.store import Namespace
from pond.transports.base import Transport, TransportError

log = logging.getLogger("pond.outbox")

_PRIORITY = {
    ActionClass.REPLY: 1,
    ActionClass.SERVICE: 2,
    ActionClass.MARKETING: 3,
}
ALERT_PRIORITY = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # sent | skipped | failed
    reason: str = ""


@dataclass(slots=True)
class _Item:
    action: Action
    priority: int
    seq: int
    enqueued_at: float
    not_before: float = 0.0
    future: asyncio.Future[Outcome] | None = None
    row: BulkRow | None = None
    alert: bool = False
    deferred_for: str = ""


@dataclass(slots=True)
class _Pacer:
    """In-memory pacing state: token bucket, last action per chat, last recipient."""

    tokens: float = 1.0  # start nearly empty: a crash loop must not get a fresh burst
    refilled_at: float = 0.0
    last_at: float = 0.0
    last_to: str = ""
    per_chat: dict[str, float] = field(default_factory=dict)
    bulk_since_pause: int = 0


class Outbox:
    def __init__(
        self,
        transport: Transport,
        clock: Clock,
        settings: OutboxSettings,
        ledger: Ledger,
        state: Namespace,
        *,
        record: Callable[[str, dict[str, Any]], None] = lambda kind, data: None,
        rng: random.Random | None = None,
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.settings = settings
        self.ledger = ledger
        self.state = state
        self.record = record
        self.rng = rng or random.Random()
        self.alert: Callable[[str, dict[str, Any]], None] = lambda key, data: None
        self.on_error: Callable[[Exception], None] = lambda error: None
        # True while the operator paused everything: bulk rows and non-reply, non-alert
        # actions stay queued (not picked, not deferred) until it turns False again.
        self.hold: Callable[[], bool] = lambda: False
        self._items: list[_Item] = []
        self._seq = itertools.count()
        self._pacer = _Pacer(refilled_at=self._ts())
        self._job_not_before: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._cap_alerted: set[tuple[str, str]] = set()
        self.paused = False

    # -- time helpers -----------------------------------------------------------------
    def _ts(self) -> float:
        return self.clock.now().timestamp()

    def _day(self) -> str:
        return self.clock.now().date().isoformat()

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
        now = self._ts()
        item = _Item(action, priority, next(self._seq), now, future=future, alert=alert)
        self._items.append(item)
        self.record("out.queued", {**_summary(action)})
        self._wake.set()

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
        """At start-up: rows that were mid-send when we died become "unknown"."""
        stuck = self.ledger.recover(self._ts())
        for row in stuck:
            self.record("out.unknown", {"job": row.job, "to": row.recipient})
        if stuck:
            log.warning("%d bulk deliveries were in flight at the last stop: unknown", len(stuck))
            self.alert("core/unknown_alert", {"count": len(stuck)})
        return stuck

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
        return float(self.state.get("breaker_until", 0.0))  # type: ignore[arg-type]

    def breaker_open(self) -> bool:
        return self._ts() < self.breaker_until

    def _trip_breaker(self, reason: str) -> None:
        trips = int(self.state.get("breaker_trips", 0)) + 1  # type: ignore[call-overload]
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

    # -- the worker -------------------------------------------------------------------------
    def has_ready(self) -> bool:
        return self._pick() is not None

    def next_due(self) -> float | None:
        """Earliest moment a deferred item or job becomes ready (epoch seconds)."""
        hold = self.hold()
        times = [i.not_before for i in self._items if not (hold and _holdable(i))]
        if not hold:
            times += [t for job, t in self._job_not_before.items() if job in self._active_jobs()]
        return min(times) if times else None

    def _active_jobs(self) -> list[str]:
        return self.ledger.active_jobs()

    def _pick(self) -> _Item | None:
        if self.paused:
            return None
        now = self._ts()
        hold = self.hold()  # "pause everything": held work is parked, not deferred
        ready = [i for i in self._items if i.not_before <= now and not (hold and _holdable(i))]
        if ready:
            return min(ready, key=lambda i: (i.priority, i.seq))
        if hold:
            return None
        for job in self._active_jobs():
            if self._job_not_before.get(job, 0.0) > now:
                continue
            rows = self.ledger.pending(job, limit=1)
            if not rows:
                self.ledger.set_job_status(job, JobStatus.DONE)
                self.record("job.done", {"job": job, **self.ledger.summary(job)})
                continue
            row = rows[0]
            return _Item(row.action, 10, -1, now, row=row)
        return None

    async def step(self) -> bool:
        """Perform (or skip, or defer) the most urgent ready item. False when none is ready."""
        item = self._pick()
        if item is None:
            return False
        if item.row is None:
            self._items.remove(item)
        try:
            await self._process(item)
        except Exception as error:
            # A bug here must not stop the one worker; the item is failed, never retried
            # blindly (a bulk row left "sending" becomes "unknown" at the next start).
            log.error("outbox failed on %s: %s", item.action.describe(), type(error).__name__)
            if item.future is not None and not item.future.done():
                item.future.set_result(Outcome("failed", "internal"))
            self.on_error(error)
        return True

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
            if last is not None and now - last < interval:
                return self._finish(item, Outcome("skipped", "frequency"))
        if held and self.breaker_open():
            return self._defer(item, self.breaker_until, "breaker")
        if cls is ActionClass.MARKETING and self.settings.quiet_hours.contains(
            self.clock.now().time()
        ):
            return self._defer(item, self._quiet_end(), "quiet_hours")

        if not self.transport.connected:
            return self._defer(item, self._retry_at(), "offline")

        await self.clock.sleep(self._pacing_wait(item))

        limits = self._limits(action)
        day = self._day()
        try:
            capped = self.ledger.reserve(day, limits)
        except (SQLAlchemyError, OSError) as error:
            # Disk full, database locked: without a durable count there is no send. Hold
            # the action and try again; nothing is lost and no cap can be exceeded.
            log.error(
                "cannot count %s against the daily cap (%s): holding it",
                action.describe(),
                _storage_error(error),
            )
            return self._defer(item, self._retry_at(), "storage")
        if capped is not None:
            if item.row is not None:
                return self._defer(item, self._next_day(), f"cap:{capped}")
            self._cap_alert(capped)
            return self._finish(item, Outcome("skipped", f"cap:{capped}"))
        if item.row is not None and not self.ledger.mark(
            item.row.job,
            item.row.recipient,
            RowStatus.SENDING,
            self._ts(),
            expect=RowStatus.PENDING,
        ):
            self.ledger.release(day, limits)
            return  # cancelled or taken meanwhile
        outcome = await self._perform(item)
        if outcome.status == "sent":
            return self._finish(item, outcome)
        if outcome.reason not in {"throttled", "offline"}:
            return self._finish(item, outcome)
        # Refused by the platform, or never attempted: the slot was not used, and it is
        # safe to try again later.
        self.ledger.release(day, limits)
        if outcome.reason == "offline" or held:
            until = self.breaker_until if outcome.reason == "throttled" else self._retry_at()
            if item.row is not None:
                self.ledger.mark(
                    item.row.job,
                    item.row.recipient,
                    RowStatus.PENDING,
                    self._ts(),
                    reason=outcome.reason,
                    expect=RowStatus.SENDING,
                )
            return self._defer(item, until, outcome.reason)
        return self._finish(item, outcome)

    async def _perform(self, item: _Item) -> Outcome:
        action = item.action
        for attempt in (1, 2):
            try:
                await self.transport.perform(action)
            except TransportError as error:
                if error.offline:
                    return Outcome("failed", "offline")
                if self._is_throttle(error):
                    self._trip_breaker(type(error).__name__)
                    return Outcome("failed", "throttled")
                if error.gone:  # they deleted the account: recorded for the customer book
                    return Outcome("failed", "not_friend")
                log.warning(
                    "action failed (%s), attempt %d: %s",
                    action.describe(),
                    attempt,
                    type(error).__name__,
                )
                if attempt == 1 and error.retryable:
                    await self.clock.sleep(self.settings.retry_backoff_s)
                    continue
                return Outcome("failed", "transport")
            break
        self._note_performed(item)
        return Outcome("sent")

    def _note_performed(self, item: _Item) -> None:
        now = self._ts()
        p = self._pacer
        p.last_at = now
        p.last_to = item.action.to
        p.per_chat[item.action.to] = now
        if len(p.per_chat) > 10_000:  # only recent chats matter for the per-chat gap
            horizon = now - 3600
            p.per_chat = {k: v for k, v in p.per_chat.items() if v >= horizon}
        if item.row is not None:
            p.bulk_since_pause += 1
        if item.action.cls is ActionClass.MARKETING and item.action.contact_id:
            self.ledger.note_marketing(item.action.contact_id, now)

    def _finish(self, item: _Item, outcome: Outcome) -> None:
        action = item.action
        if item.row is not None:
            status = {
                "sent": RowStatus.SENT,
                "failed": RowStatus.FAILED,
                "skipped": RowStatus.SKIPPED,
            }[outcome.status]
            self.ledger.mark(item.row.job, item.row.recipient, status, self._ts(), outcome.reason)
        if item.future is not None and not item.future.done():
            item.future.set_result(outcome)
        self.record(f"out.{outcome.status}", {**_summary(action), "reason": outcome.reason})
        if outcome.status != "sent":
            log.info("%s: %s %s", outcome.status, action.describe(), outcome.reason)

    def _defer(self, item: _Item, until: float, reason: str) -> None:
        if item.row is not None:
            self._job_not_before[item.row.job] = until
        else:
            item.not_before = until
            self._items.append(item)
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
        }
        limits = {action.kind.value: caps[action.kind]}
        if action.is_bulk:
            limits["broadcast"] = s.cap_broadcast
        return limits

    def _pacing_wait(self, item: _Item) -> float:
        s = self.settings
        p = self._pacer
        now = self._ts()
        rate = s.rate_per_min / 60.0
        p.tokens = min(float(s.burst), p.tokens + (now - p.refilled_at) * rate)
        p.refilled_at = now
        waits = [0.0]
        if p.tokens < 1.0:
            waits.append((1.0 - p.tokens) / rate)
        to = item.action.to
        if to in p.per_chat:
            waits.append(p.per_chat[to] + s.chat_gap_s - now)
        if p.last_to and p.last_to != to:
            gap = self.rng.uniform(s.switch_gap_s.low, s.switch_gap_s.high)
            waits.append(p.last_at + gap - now)
        if item.action.kind is ActionKind.SEND and item.action.text:
            typing = min(s.typing_max_s, len(item.action.text) / s.typing_chars_per_s)
            waits.append(typing - (now - item.enqueued_at))
        if item.row is not None and s.bulk_pause_every and p.bulk_since_pause >= s.bulk_pause_every:
            waits.append(self.rng.uniform(s.bulk_pause_s.low, s.bulk_pause_s.high))
            p.bulk_since_pause = 0
        wait = max(waits)
        # The token is spent now: the bucket is what the account is paced by.
        p.tokens = p.tokens + wait * rate - 1.0
        p.refilled_at = now + wait
        return wait

    def _quiet_end(self) -> float:
        window = self.settings.quiet_hours
        now = self.clock.now()
        end = now.replace(hour=window.end.hour, minute=window.end.minute, second=0, microsecond=0)
        if end <= now:
            end += timedelta(days=1)
        return end.timestamp()

    def _retry_at(self) -> float:
        return self._ts() + max(1.0, self.settings.retry_backoff_s)

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
            if item.future is not None and not item.future.done():
                item.future.set_result(Outcome("skipped", "erased"))
        self._pacer.per_chat.pop(contact_id, None)
        return len(gone)


def _holdable(item: _Item) -> bool:
    return not item.alert and item.action.cls is not ActionClass.REPLY


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
