"""Simulated time for an App: the console simulator and the tests move a FakeClock, and
the driver fires the jobs that fall due on the way and lets deferred outbox work go out at
the moments it falls due. Production never uses this: there APScheduler fires the jobs on
the wall clock (App.start_background).

Jobs due at the same moment all run, in (fire time, job id) order: the order APScheduler's
memory job store hands due jobs to its executor, so a simulated day fires the same jobs as a
real one (tests/test_simulation.py compares the two)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.triggers.base import BaseTrigger

from pond.clock import FakeClock

_SECOND = timedelta(seconds=1)

if TYPE_CHECKING:
    from pond.app import App


@dataclass(frozen=True, slots=True)
class Due:
    """Jobs due at one moment, in the order they run."""

    at: datetime
    job_ids: tuple[str, ...]


class SimDriver:
    def __init__(self, app: App, clock: FakeClock) -> None:
        self.app = app
        self.clock = clock
        # job id -> (its trigger, asked after, next fire time): a simulated week asks for the
        # next fire time of every job each minute; a trigger's answer holds until it passes.
        self._next: dict[str, tuple[object, datetime, datetime | None]] = {}

    def _next_fire(self, job_id: str, trigger: BaseTrigger, after: datetime) -> datetime | None:
        cached = self._next.get(job_id)
        if cached is not None:
            known, asked, nxt = cached
            if known is trigger and asked <= after and (nxt is None or after + _SECOND <= nxt):
                return nxt
        fresh: datetime | None = trigger.get_next_fire_time(None, after + _SECOND)
        self._next[job_id] = (trigger, after, fresh)
        return fresh

    def due(self, after: datetime, until: datetime) -> Due | None:
        """The earliest fire time in (after, until] of any job, with every job due then.
        Asked afresh each time: a job may get a new trigger from data on the way (calendar)."""
        best: datetime | None = None
        ids: list[str] = []
        for job_id, trigger in self.app.triggers.items():
            nxt = self._next_fire(job_id, trigger, after)
            if nxt is None or nxt > until or (best is not None and nxt > best):
                continue
            if best is None or nxt < best:
                best, ids = nxt, []
            ids.append(job_id)
        return Due(best, tuple(sorted(ids))) if best is not None else None

    def upcoming(self) -> list[tuple[str, datetime | None]]:
        """Each job with its next fire time from now (None: it will not fire again)."""
        now = self.clock.now()
        return [
            (job_id, trigger.get_next_fire_time(None, now + timedelta(seconds=1)))
            for job_id, trigger in sorted(self.app.triggers.items())
        ]

    async def settle(self, *, jump: bool = False) -> None:
        """Run handlers and the outbox until nothing can move (the console and tests drive
        the outbox this way instead of App.run). Handlers may await their send's outcome:
        the outbox is stepped while they wait. A handler still waiting for deferred work
        (quiet hours, say) is left waiting; with jump=True the clock jumps to that work
        instead, up to a week ahead (work held by a transport that never comes back would
        otherwise make the jumps endless)."""
        app, clock = self.app, self.clock
        stalled = 0
        horizon = clock.now().timestamp() + 7 * 86400
        while True:
            await asyncio.sleep(0)
            if await app.outbox.step():
                stalled = 0
                continue
            running = app.in_flight()
            if running:
                done, _ = await asyncio.wait(
                    running, timeout=0.005, return_when=asyncio.FIRST_COMPLETED
                )
                if done or app.outbox.next_due() is None:
                    continue  # progress, or handlers doing real I/O: keep waiting
                stalled += 1
                if stalled < 40:
                    continue
            due = app.outbox.next_due()
            if not jump or due is None or due > horizon:
                break
            stalled = 0
            await clock.sleep(max(0.0, due - clock.now().timestamp()))
        app.raise_errors()

    async def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`, firing due jobs and releasing deferred outbox
        work in time order (jobs first when both fall due at the same moment)."""
        app, clock, settle = self.app, self.clock, self.settle
        await settle()
        cursor = clock.now()
        end = cursor + timedelta(seconds=seconds)
        while True:
            due = self.due(cursor, end)
            job_at = due.at.timestamp() if due else None
            out_at = app.outbox.next_due()
            if out_at is not None and out_at > end.timestamp():
                out_at = None
            if job_at is None and out_at is None:
                break
            if due is not None and job_at is not None and (out_at is None or job_at <= out_at):
                cursor = due.at
                clock.set(max(clock.now(), due.at))
                for job_id in due.job_ids:
                    await app.run_job(job_id, due.at)
                    await settle()
            else:
                assert out_at is not None
                clock.set(max(clock.now(), datetime.fromtimestamp(out_at, clock.tz)))
                await settle()
                if app.outbox.next_due() == out_at:  # nothing could move: give up
                    break
            await settle()
        if clock.now() < end:
            clock.set(end)
        await settle()
