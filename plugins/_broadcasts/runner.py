"""The campaign state machine: create, confirm, start, pause, resume, cancel, expire, finish.

    draft/blocked --confirm(count)--> scheduled --due--> running <--> paused
        |                                 |                 |            |
        +--------------------------- cancel -----------------+------------+--> cancelled
    scheduled --too late--> missed;  running/paused --expires--> expired;  running --> done
    scheduled --due, but the audience grew / copy or media gone / empty--> blocked

Sending is the governor's: a campaign becomes one bulk job (`broadcasts.<id>`) in its
at-most-once journal, started once (the job id makes a second start add nobody). Pause and
cancel move journal rows with compare-and-set marks (pending -> held, pending/held ->
skipped "cancelled"), so a row the outbox is already pacing towards is not sent after the
operator said stop: its own pending -> sending mark fails. Those marks are safe from the
command-line tool's process too; every other change is made by the running bot."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pond import JobStatus, Ledger, Mode, PersonaError, RowStatus, capabilities

from . import audience as aud
from . import report as rep
from . import state
from .progress import staff_waiting, when
from .spec import CampaignError, Spec, check_media_file
from .state import Ctx

Problem = dict[str, Any]  # {"code": ..., "detail": ..., more}
BEAT_EVERY_S = 30.0


def job_of(cid: str) -> str:
    return f"broadcasts.{cid}"


def move_rows(
    ledger: Ledger, job: str, frm: RowStatus, to: RowStatus, at: float, reason: str = ""
) -> int:
    """Compare-and-set every `frm` row of `job` to `to`; returns how many moved."""
    moved = 0
    for row in ledger.rows_of(job, frm):
        if ledger.mark(job, row.recipient, to, at, reason, expect=frm):
            moved += 1
    return moved


def hold_rows(ledger: Ledger, job: str, at: float) -> int:
    return move_rows(ledger, job, RowStatus.PENDING, RowStatus.HELD, at, "paused")


def stop_rows(ledger: Ledger, job: str, at: float, reason: str) -> int:
    moved = move_rows(ledger, job, RowStatus.PENDING, RowStatus.SKIPPED, at, reason)
    return moved + move_rows(ledger, job, RowStatus.HELD, RowStatus.SKIPPED, at, reason)


class Runner:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.campaigns = state.Campaigns(ctx.store)

    @property
    def now(self) -> float:
        return self.ctx.now.timestamp()

    def spec(self, record: state.Record) -> Spec:
        return Spec.from_json(record["spec"])

    def audience(self, record: state.Record, at: float) -> aud.Audience:
        return aud.resolve(
            self.ctx, self.spec(record), at=at, churned_tags=self.config.churned_tags
        )

    def _save(self, record: state.Record, event: str, by: str = "", **data: Any) -> None:
        state.note_event(record, event, self.now, by, **data)
        self.campaigns.save(record)
        self.ctx.record(event, campaign=record["id"], status=record["status"], by=by, **data)

    # -- create and confirm ----------------------------------------------------------------
    def create(self, spec: Spec, by: str) -> tuple[state.Record, bool]:
        existing = self.campaigns.get(spec.id)
        if existing is not None and existing["status"] not in state.EDITABLE:
            raise CampaignError("exists", existing["status"], field="name", file=spec.file)
        record = state.new_record(spec.to_json(), self.now, by)
        if existing is not None:
            record["history"] = list(existing.get("history") or [])
        self._save(record, "created", by, audience=spec.audience, copy=spec.copy)
        return record, existing is not None

    def startable(self, record: state.Record) -> Problem | None:
        """What would stop a start now: the copy or media gone, the expiry passed."""
        spec = self.spec(record)
        if not self.ctx.persona.has(spec.copy):
            return {"code": "copy_unknown", "detail": spec.copy}
        if spec.media and spec.media.get("path"):
            problem = check_media_file(Path(spec.media["path"]), spec.media["kind"])
            if problem:
                return {"code": problem, "detail": spec.media["path"]}
        if spec.expires_at is not None and spec.expires_at <= self.now:
            return {"code": "expires_past", "detail": ""}
        if spec.audience == "rooms" and self.ctx.running and not self.ctx.can(capabilities.ROOMS):
            return {"code": "no_rooms", "detail": self.ctx.transport_name}
        return None

    def check_confirm(
        self, record: state.Record, count: int | None, *, exact: bool
    ) -> tuple[Problem | None, aud.Audience | None]:
        """Whether `count` confirms this campaign's audience as computed now."""
        if record["status"] not in state.EDITABLE:
            return {"code": "bad_state", "status": record["status"]}, None
        spec = self.spec(record)
        past = spec.start_at is not None and spec.start_at <= self.now
        if past and record["status"] == state.DRAFT:
            # Never confirmed: the operator must choose a new time. A blocked campaign was
            # confirmed in time; confirming it again starts it now.
            return {"code": "start_past", "detail": when(self.ctx, spec.start_at)}, None
        problem = self.startable(record)
        if problem:
            return problem, None
        audience = self.audience(record, max(spec.start_at or 0.0, self.now))
        eligible = len(audience.eligible)
        if eligible == 0:
            return {"code": "empty", "expected": 0}, audience
        if count is None:
            return {"code": "confirm", "expected": eligible}, audience
        if exact and count != eligible:
            return {"code": "count_mismatch", "expected": eligible, "given": count}, audience
        if not exact and self._grew(count, eligible):
            return {"code": "grew", "expected": eligible, "given": count}, audience
        return None, audience

    def _grew(self, confirmed: int, eligible: int) -> bool:
        growth = float(self.config.audience_growth_pct)
        return eligible > confirmed * (1 + growth / 100.0)

    def confirm(self, record: state.Record, count: int, by: str, asked_at: float) -> None:
        record["status"] = state.SCHEDULED
        record["confirmed"] = {"count": count, "at": self.now, "by": by}
        planned = self.spec(record).start_at
        record["start_at"] = planned if planned is not None and planned > asked_at else asked_at
        record["note"] = None
        self._save(record, "confirmed", by, count=count)

    # -- start -------------------------------------------------------------------------------
    def start_due(self, record: state.Record, *, announce: bool) -> Problem | None:
        """A scheduled campaign whose time has come: start it, or say why it did not."""
        job = job_of(record["id"])
        now = self.now
        if self.ctx.ledger.job_status(job) is not None:
            # Journaled before a crash, but the record never said so: it is running.
            record["status"] = state.RUNNING
            record["started_at"] = record.get("started_at") or now
            self._save(record, "started", "bot", adopted=True)
            return None
        late = now - float(record["start_at"])
        if late > self.config.max_late_h * 3600:
            return self._end_unstarted(record, state.MISSED, {"code": "missed", "late_s": late})
        spec = self.spec(record)
        if spec.expires_at is not None and now >= spec.expires_at:
            return self._end_unstarted(record, state.EXPIRED, {"code": "expires_past"})
        problem = self.startable(record)
        audience = None if problem else self.audience(record, now)
        if audience is not None:
            confirmed = int((record.get("confirmed") or {}).get("count", 0))
            eligible = len(audience.eligible)
            if eligible == 0:
                problem = {"code": "empty", "expected": 0}
            elif self._grew(confirmed, eligible):
                problem = {"code": "grew", "expected": eligible, "given": confirmed}
        if problem is None and audience is not None:
            try:
                actions = aud.actions(self.ctx, spec, audience.eligible)
            except PersonaError as error:
                problem = {"code": "copy_render", "detail": str(error)}
        if problem is not None or audience is None:
            problem = problem or {"code": "internal"}
            record["status"] = state.BLOCKED
            record["note"] = problem
            self._save(record, "blocked", "bot", code=problem["code"])
            if announce:
                self.alert(record, "blocked", problem)
            return problem
        meta = {"campaign": record["id"], "copy": spec.copy, "title": spec.title}
        if spec.reply:  # its recipients' reply word is answered (auto_reply) for a while
            meta["reply"] = spec.reply
        # Journal first, then the record: a crash in between is adopted above on restart.
        added = self.ctx.outbox.enqueue_bulk(job, actions, meta)
        record["status"] = state.RUNNING
        record["started_at"] = now
        record["audience"] = audience.snapshot()
        self._save(record, "started", "bot", rows=added, excluded=audience.counts())
        if announce:
            self.alert(record, "started", {"rows": added})
        return None

    def _end_unstarted(self, record: state.Record, status: str, problem: Problem) -> Problem:
        record["status"] = status
        record["note"] = problem
        record["finished_at"] = self.now
        self._save(record, status, "bot")
        self.alert(record, status, problem)
        return problem

    # -- pause, resume, cancel, expire, finish ---------------------------------------------
    def pause(self, record: state.Record, by: str) -> Problem | None:
        if record["status"] != state.RUNNING:
            return {"code": "bad_state", "status": record["status"]}
        job = job_of(record["id"])
        held = hold_rows(self.ctx.ledger, job, self.now)
        self.ctx.outbox.set_job_status(job, JobStatus.PAUSED)
        record["status"] = state.PAUSED
        self._save(record, "paused", by, held=held)
        return None

    def resume(self, record: state.Record, by: str) -> Problem | None:
        if record["status"] != state.PAUSED:
            return {"code": "bad_state", "status": record["status"]}
        spec = self.spec(record)
        if spec.expires_at is not None and self.now >= spec.expires_at:
            self.expire(record)
            return {"code": "expires_past", "detail": ""}
        job = job_of(record["id"])
        released = move_rows(
            self.ctx.ledger, job, RowStatus.HELD, RowStatus.PENDING, self.now, "resumed"
        )
        self.ctx.outbox.set_job_status(job, JobStatus.ACTIVE)
        record["status"] = state.RUNNING
        self._save(record, "resumed", by, released=released)
        return None

    def cancel(self, record: state.Record, by: str) -> Problem | None:
        if record["status"] in state.FINAL:
            return {"code": "bad_state", "status": record["status"]}
        stopped = self._stop(record, "cancelled")
        record["status"] = state.CANCELLED
        record["finished_at"] = self.now
        self._save(record, "cancelled", by, stopped=stopped)
        return None

    def expire(self, record: state.Record) -> None:
        stopped = self._stop(record, "expired")
        record["status"] = state.EXPIRED
        record["finished_at"] = self.now
        self._save(record, "expired", "bot", stopped=stopped)
        self.alert(record, "expired", {"stopped": stopped})

    def _stop(self, record: state.Record, reason: str) -> int:
        job = job_of(record["id"])
        if self.ctx.ledger.job_status(job) is None:
            return 0
        stopped = stop_rows(self.ctx.ledger, job, self.now, reason)
        self.ctx.outbox.set_job_status(job, JobStatus.CANCELLED)
        return stopped

    def finish_if_done(self, record: state.Record) -> bool:
        job = job_of(record["id"])
        summary = self.ctx.ledger.summary(job)
        if not summary or any(summary.get(k) for k in ("pending", "sending", "held")):
            return False
        staff_confirm = self.ctx.mode(capabilities.BROADCAST) is Mode.STAFF_CONFIRM
        if staff_confirm and staff_waiting(self.ctx, job):
            # Not done while staff have yet to confirm: the finished report would count
            # rows whose results (sent / not a friend / over quota) are still to come.
            return False
        last = max((r.updated_at for r in self.ctx.ledger.rows_of(job)), default=self.now)
        record["status"] = state.DONE
        record["finished_at"] = max(last, float(record.get("started_at") or last))
        self._save(record, "finished", "bot", **summary)
        self.report_alert(record, "finished")
        return True

    def followup(self, record: state.Record) -> None:
        hours = self.config.followup_report_h
        finished = record.get("finished_at")
        if hours <= 0 or record.get("followup_sent") or not record.get("started_at"):
            return
        if finished is None or self.now < float(finished) + hours * 3600:
            return
        record["followup_sent"] = True
        self._save(record, "followup", "bot")
        self.report_alert(record, "final")

    # -- telling the admins ----------------------------------------------------------------
    def alert(self, record: state.Record, event: str, problem: Problem | None = None) -> None:
        problem = problem or {}
        self.ctx.alert(
            "broadcasts/alert",
            event=event,
            id=record["id"],
            title=record["title"],
            code=str(problem.get("code", "")),
            detail=str(problem.get("detail", "")),
            expected=int(problem.get("expected", 0) or 0),
            given=int(problem.get("given", 0) or 0),
            rows=int(problem.get("rows", 0) or 0),
            stopped=int(problem.get("stopped", 0) or 0),
            start_at=when(self.ctx, record.get("start_at")),
        )

    def report_alert(self, record: state.Record, moment: str) -> None:
        self.ctx.alert(
            "broadcasts/report", moment=moment, via="chat", **rep.report(self.ctx, record)
        )

    # -- the minute check ----------------------------------------------------------------------
    def beat(self) -> None:
        # Wall-clock seconds: what the tool compares with. At most one write per 30 s (a
        # simulated clock can run many minute checks in one real second).
        st = self.ctx.state
        if time.time() - st.last_beat < BEAT_EVERY_S:
            return
        st.last_beat = time.time()
        self.campaigns.beat(
            {
                "wall": time.time(),
                "at": self.now,
                "pid": os.getpid(),
                "transport": self.ctx.transport_name,
            }
        )

    def apply_requests(self) -> None:
        """Requests of the command-line tool, oldest first; each is applied once."""
        for key, request in self.campaigns.requests():
            record = self.campaigns.get(str(request.get("campaign", "")))
            action, by = str(request.get("action")), str(request.get("by", "cli"))
            problem: Problem | None = None
            if record is None:
                problem = {"code": "not_found"}
            elif action == "start":
                problem = self._start_request(record, request, by)
            elif action == "pause":
                problem = self.pause(record, by)
            elif action == "resume":
                problem = self.resume(record, by)
            elif action == "cancel":
                problem = self.cancel(record, by)
            self.campaigns.drop_request(key)
            if problem and record is not None and problem.get("code") != "bad_state":
                record = self.campaigns.get(record["id"]) or record
                record["note"] = problem
                self.campaigns.save(record)
                self.alert(record, "refused", {**problem, "detail": action})
            if problem:
                code = str(problem.get("code", ""))
                self.ctx.record(
                    "request_refused",
                    campaign=str(request.get("campaign", "")),
                    action=action,
                    code=code,
                )

    def _start_request(
        self, record: state.Record, request: state.Record, by: str
    ) -> Problem | None:
        count = int(request.get("count", 0))
        problem, _ = self.check_confirm(record, count, exact=False)
        if problem:
            return problem
        # Lateness counts from the request; a tool whose clock runs ahead of the bot's (the
        # console simulator's is simulated) cannot schedule a "now" campaign for later.
        self.confirm(record, count, by, min(float(request.get("at", self.now)), self.now))
        return None

    def reconcile(self) -> None:
        """Run by the bot every minute and at start-up."""
        self.beat()
        self.apply_requests()
        for record in self.campaigns.all():
            try:
                self._reconcile_one(record)
            except Exception as error:
                self.ctx.log.exception("campaign %s: check failed", record["id"])
                self.ctx.record("error", campaign=record["id"], error=type(error).__name__)
                if self.ctx.strict:
                    raise

    def _reconcile_one(self, record: state.Record) -> None:
        status = record["status"]
        spec = self.spec(record)
        if status == state.SCHEDULED and float(record["start_at"]) <= self.now:
            self.start_due(record, announce=True)
        elif status in (state.RUNNING, state.PAUSED) and (
            spec.expires_at is not None and self.now >= spec.expires_at
        ):
            self.expire(record)
        elif status == state.RUNNING:
            self.finish_if_done(record)
        if record["status"] in state.FINAL:
            self.followup(record)
