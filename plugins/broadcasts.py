"""Segmented broadcasts (群发): campaigns with a dry run, confirmation, progress, pause,
resume, cancel and an honest delivery report. Sending is the governor's job: a campaign
becomes one at-most-once bulk job, so caps, quiet hours, opt-out and frequency apply.

A campaign is a file persona/broadcasts/campaigns/<id>.toml (audience: segment, rooms or a
CSV of ids; copy: a persona key under BROADCASTS_COPY_PREFIXES; optional media; start "now"
or a time; optional expiry). Created campaigns are snapshots in the database.

Commands (admins, private chat; names in persona/broadcasts/commands.toml): broadcast_create,
broadcast_dry_run, broadcast_start (needs the recipient count as confirmation),
broadcast_status, broadcast_pause, broadcast_resume, broadcast_cancel, broadcast_report.
scripts/broadcast.py runs the same commands from a terminal on the same data dir; it never
sends: its start/resume requests wait for the running bot's minute check (`broadcasts.tick`,
JOB_BROADCASTS_TICK_CRON), its pause/cancel hold the journal at once.
Persona: broadcasts/created, dry_run, changed, status, report, refused, alert.
Config: BROADCASTS_* (see config.example.env).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from plugins._broadcasts import progress, report, runner, state
from plugins._broadcasts.spec import CampaignError, Spec, load, resolve_path
from plugins._broadcasts.state import BroadcastsConfig, BroadcastsState, Ctx, build_state
from pond import AgendaItem, Command, Plugin, Problem, ReviewItem, bot_running

__all__ = ["BroadcastsConfig", "BroadcastsState", "plugin"]
HEARTBEAT_FRESH_S = 150.0  # the tick writes one a minute; two missed ones mean no bot


KEYS = ["created", "dry_run", "changed", "status", "report", "refused", "alert"]
plugin = Plugin(
    "broadcasts",
    persona=[f"broadcasts/{k}" for k in KEYS],
    # A campaign file names its copy (BROADCASTS_COPY_PREFIXES, checked when it loads).
    persona_prefixes=["broadcasts/"],
    config=BroadcastsConfig,
    state=build_state,
    description="segmented broadcasts with dry run, progress, pause/resume and report",
)


# -- helpers -------------------------------------------------------------------------------
def _offline(ctx: Ctx) -> bool:
    """True in scripts/broadcast.py: an App that was never started has no outbox running."""
    return not ctx.running


def _via(cmd: Command) -> str:
    return "cli" if cmd.origin == "cli" else "chat"


def _by(cmd: Command) -> str:
    return f"{cmd.origin}:{cmd.sender.id}"


def _words(ctx: Ctx) -> dict[str, str]:
    """Each command's display name (operators may rename them in commands.toml)."""
    catalog = ctx.commands.catalog
    return {spec.name: catalog.info(spec.name).display for spec in plugin.commands}


def campaigns_dir(ctx: Ctx) -> Path:
    configured = ctx.config.campaigns_dir
    if configured:
        return Path(configured)
    return ctx.settings.bot.persona_dir / "broadcasts" / "campaigns"


def bot_status(ctx: Ctx) -> dict[str, Any]:
    """Is a bot running on this data dir? From its heartbeat (wall-clock, not the fake one)."""
    if not _offline(ctx):
        return {"running": True, "age_s": 0, "transport": ctx.transport_name, "self": True}
    beat = state.Campaigns(ctx.store).heartbeat() or {}
    age = time.time() - float(beat.get("wall", 0.0))
    # The data dir's lock decides (a held lock is a running bot); the heartbeat only where
    # no bot that takes the lock has run yet.
    by_lock = bot_running(ctx.settings.bot.data_dir)
    return {
        "running": (
            bool(beat) and not beat.get("stopped") and age < HEARTBEAT_FRESH_S
            if by_lock is None
            else by_lock
        ),
        "age_s": int(age) if beat else -1,
        "transport": str(beat.get("transport", "")),
        "self": False,
    }


async def _reply(ctx: Ctx, cmd: Command, key: str, **variables: Any) -> None:
    await ctx.reply(f"broadcasts/{key}", via=_via(cmd), words=_words(ctx), **variables)


async def _refuse(
    ctx: Ctx, cmd: Command, problem: dict[str, Any], name: str = "", command: str = ""
) -> None:
    info = ctx.commands.catalog.info(command or cmd.name)
    code = str(problem.get("code", ""))
    ctx.record("refused", command=cmd.name, campaign=name, code=code, by=_by(cmd))
    await _reply(
        ctx,
        cmd,
        "refused",
        code=code,
        field=str(problem.get("field", "")),
        detail=str(problem.get("detail", "")),
        file=str(problem.get("file", "")),
        status=str(problem.get("status", "")),
        expected=int(problem.get("expected", 0) or 0),
        given=int(problem.get("given", 0) or 0),
        name=name,
        usage=info.usage or info.display,
    )


async def _campaign(ctx: Ctx, cmd: Command) -> state.Record | None:
    """The campaign named by the first argument, or a refusal already sent."""
    if not cmd.args:
        await _refuse(ctx, cmd, {"code": "usage"})
        return None
    record = state.Campaigns(ctx.store).get(cmd.args[0])
    if record is None:
        await _refuse(ctx, cmd, {"code": "not_found"}, name=cmd.args[0])
    return record


def _pending_requests(ctx: Ctx, cid: str) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {"action": r["action"], "age_s": int(max(0.0, now - float(r.get("wall", now))))}
        for _, r in state.Campaigns(ctx.store).requests(cid)
    ]


# -- commands --------------------------------------------------------------------------------
@plugin.command("broadcast_create", keep_args=True)
async def create(cmd: Command, ctx: Ctx) -> None:
    if not cmd.args:
        await _refuse(ctx, cmd, {"code": "usage"})
        return
    try:
        path = resolve_path(cmd.rest, campaigns_dir(ctx), allow_paths=cmd.origin == "cli")
        spec = load(
            path,
            now=ctx.now,
            tz=ctx.clock.tz,
            persona=ctx.persona,
            copy_prefixes=ctx.config.copy_prefixes,
            shown=_shown(ctx, path),
            ctx=ctx,
        )
        _record, again = runner.Runner(ctx).create(spec, _by(cmd))
    except CampaignError as error:
        await _refuse(ctx, cmd, error.data(), name=Path(cmd.rest.strip()).stem)
        return
    await _reply(ctx, cmd, "created", again=again, **_brief(ctx, spec))


def _shown(ctx: Ctx, path: Path) -> str:
    """The file as operators know it: relative to the project when it is inside."""
    try:
        return str(path.resolve().relative_to(ctx.settings.bot.persona_dir.resolve().parent))
    except ValueError:
        return str(path)


def _brief(ctx: Ctx, spec: Spec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "title": spec.title,
        "copy": spec.copy,
        "audience": {
            "kind": spec.audience,
            "segment": spec.segment,
            "count": len(spec.ids),
            "file": spec.file,
        },
        "attachment": report.describe_media(spec),
        "start": progress.when(ctx, spec.start_at),
        "expires": progress.when(ctx, spec.expires_at),
    }


async def _dry_run(ctx: Ctx, cmd: Command, record: state.Record, confirm: bool) -> None:
    run = runner.Runner(ctx)
    spec = run.spec(record)
    at = max(spec.start_at or 0.0, run.now)
    audience = run.audience(record, at)
    data = report.dry_run(ctx, spec, audience, sample_size=ctx.config.sample_size, at=at)
    ctx.record(
        "dry_run",
        campaign=spec.id,
        eligible=data["eligible"],
        excluded=data["excluded"],
        by=_by(cmd),
    )
    await _reply(
        ctx, cmd, "dry_run", confirm=confirm, status=record["status"], bot=bot_status(ctx), **data
    )


@plugin.command("broadcast_dry_run", keep_args=True)
async def dry_run(cmd: Command, ctx: Ctx) -> None:
    record = await _campaign(ctx, cmd)
    if record is not None:
        await _dry_run(ctx, cmd, record, confirm=False)


@plugin.command("broadcast_start", keep_args=True)
async def start(cmd: Command, ctx: Ctx) -> None:
    """`start <id>` shows the dry run and the number to confirm; `start <id> <count>` starts
    (or schedules) it when the count is exactly the number of recipients right now."""
    record = await _campaign(ctx, cmd)
    if record is None:
        return
    count: int | None = None
    if len(cmd.args) > 1:
        if not cmd.args[1].isdigit():
            await _refuse(ctx, cmd, {"code": "usage"})
            return
        count = int(cmd.args[1])
    run = runner.Runner(ctx)
    problem, _ = run.check_confirm(record, count, exact=True)
    if problem is not None and problem["code"] == "confirm":
        await _dry_run(ctx, cmd, record, confirm=True)
        return
    if problem is not None:
        await _refuse(ctx, cmd, problem, name=record["id"])
        return
    assert count is not None
    if _offline(ctx):
        state.Campaigns(ctx.store).request(
            record["id"], "start", run.now, _by(cmd), count=count, wall=time.time()
        )
        await _changed(ctx, cmd, record, "start", applied=False)
        return
    run.confirm(record, count, _by(cmd), run.now)
    if float(record["start_at"]) <= run.now:
        failed = run.start_due(record, announce=False)
        if failed is not None:
            await _refuse(ctx, cmd, failed, name=record["id"])
            return
    action = "started" if record["status"] == state.RUNNING else "scheduled"
    await _changed(ctx, cmd, record, action, applied=True)


async def _changed(
    ctx: Ctx, cmd: Command, record: state.Record, action: str, *, applied: bool, moved: int = 0
) -> None:
    data = progress.progress(ctx, record, online=bot_status(ctx)["running"])
    await _reply(
        ctx,
        cmd,
        "changed",
        action=action,
        applied=applied,
        moved=moved,
        bot=bot_status(ctx),
        **data,
    )


async def _transition(cmd: Command, ctx: Ctx, action: str) -> None:
    record = await _campaign(ctx, cmd)
    if record is None:
        return
    run = runner.Runner(ctx)
    if _offline(ctx):
        await _request(cmd, ctx, run, record, action)
        return
    problem = {"pause": run.pause, "resume": run.resume, "cancel": run.cancel}[action](
        record, _by(cmd)
    )
    if problem is not None:
        await _refuse(ctx, cmd, problem, name=record["id"])
        return
    await _changed(ctx, cmd, record, action, applied=True)


async def _request(
    cmd: Command, ctx: Ctx, run: runner.Runner, record: state.Record, action: str
) -> None:
    """From the terminal: pause and cancel take hold in the journal at once (the outbox
    cannot send a held or skipped row); the campaign's own status, and resume, follow when
    the running bot applies the request."""
    allowed = {
        "pause": {state.RUNNING},
        "resume": {state.PAUSED},
        "cancel": state.LIVE | state.EDITABLE,
    }[action]
    if record["status"] not in allowed:
        await _refuse(ctx, cmd, {"code": "bad_state", "status": record["status"]}, record["id"])
        return
    job = runner.job_of(record["id"])
    moved = 0
    if action == "pause":
        moved = runner.hold_rows(ctx.ledger, job, run.now)
    elif action == "cancel":
        moved = runner.stop_rows(ctx.ledger, job, run.now, "cancelled")
    state.Campaigns(ctx.store).request(record["id"], action, run.now, _by(cmd), wall=time.time())
    await _changed(ctx, cmd, record, action, applied=False, moved=moved)


@plugin.command("broadcast_pause", keep_args=True)
async def pause(cmd: Command, ctx: Ctx) -> None:
    await _transition(cmd, ctx, "pause")


@plugin.command("broadcast_resume", keep_args=True)
async def resume(cmd: Command, ctx: Ctx) -> None:
    await _transition(cmd, ctx, "resume")


@plugin.command("broadcast_cancel", keep_args=True)
async def cancel(cmd: Command, ctx: Ctx) -> None:
    await _transition(cmd, ctx, "cancel")


@plugin.command("broadcast_status", keep_args=True)
async def status(cmd: Command, ctx: Ctx) -> None:
    bot = bot_status(ctx)
    campaigns = state.Campaigns(ctx.store)
    if cmd.args:
        record = await _campaign(ctx, cmd)
        records = [record] if record is not None else []
        if not records:
            return
    else:
        everything = campaigns.all()
        ended = [r for r in everything if r["status"] in state.FINAL][-5:]
        records = [r for r in everything if r["status"] not in state.FINAL] + ended
    rows = []
    for record in records:
        data = progress.progress(ctx, record, online=bot["running"])
        data["requests"] = _pending_requests(ctx, record["id"])
        rows.append(data)
    await _reply(ctx, cmd, "status", campaigns=rows, one=bool(cmd.args), bot=bot)


@plugin.command("broadcast_report", keep_args=True)
async def report_(cmd: Command, ctx: Ctx) -> None:
    record = await _campaign(ctx, cmd)
    if record is None:
        return
    data = report.report(ctx, record)
    ctx.record("report", campaign=record["id"], **_numbers(data))
    await _reply(ctx, cmd, "report", moment="command", **data)


def _numbers(data: dict[str, Any]) -> dict[str, Any]:
    keys = ("total", "sent", "failed", "unknown", "pending", "held", "skipped_total")
    more = ("skipped", "excluded", "opt_out_during", "opt_out_after", "replied")
    return {k: data[k] for k in (*keys, *more)}


# -- the bot's side ----------------------------------------------------------------------------
@plugin.scheduled("* * * * *")
async def tick(ctx: Ctx) -> None:
    """Start what is due, apply the terminal's requests, expire, finish, follow up."""
    runner.Runner(ctx).reconcile()


@plugin.on_shutdown()
async def mark_stopped(ctx: Ctx) -> None:
    """A bot that stopped must not look alive to the tool for the next two minutes: its
    requests would wait for nobody. (The tool's own App never beat: nothing to clear.)"""
    if _offline(ctx):
        return
    campaigns = state.Campaigns(ctx.store)
    beat = campaigns.heartbeat()
    if beat is not None:
        campaigns.beat({**beat, "stopped": True, "wall": time.time()})


@plugin.on_startup()
async def startup(ctx: Ctx) -> None:
    # Bad config fails start-up here, with its key; the campaigns are then brought up to
    # date at once (a restart should not wait a minute to resume the schedule).
    if ctx.config.sample_size < 0 or ctx.config.max_late_h < 0:
        raise Problem(
            "startup.broadcasts_negative",
            "BROADCASTS_SAMPLE_SIZE and BROADCASTS_MAX_LATE_H must be >= 0",
        )
    if not ctx.config.copy_prefixes:
        raise Problem(
            "startup.broadcasts_prefixes",
            "BROADCASTS_COPY_PREFIXES must name at least one key prefix",
        )
    runner.Runner(ctx).reconcile()


# -- the operator's day: 待办 and the morning report ---------------------------------------------
# A campaign waiting for an operator's word, and the command that settles it.
_WAITING = {
    state.DRAFT: ("broadcast_draft", "broadcast_start"),
    state.BLOCKED: ("broadcast_blocked", "broadcast_start"),
    state.PAUSED: ("broadcast_paused", "broadcast_resume"),
}


@plugin.review_source()
async def campaigns_waiting(ctx: Ctx) -> list[ReviewItem]:
    items = []
    for record in state.Campaigns(ctx.store).all():
        waiting = _WAITING.get(record["status"])
        if waiting is None:
            continue
        kind, command = waiting
        history = record.get("history") or [{}]
        items.append(
            ReviewItem(
                kind=kind,
                ref=record["id"],
                at=float(history[-1].get("at") or record["created_at"]),
                detail=record["id"],
                title=str(record.get("title") or ""),
                command=command,
                args=(record["id"],),
            )
        )
    return items


@plugin.agenda_source()
async def campaigns_ahead(ctx: Ctx) -> list[AgendaItem]:
    """Every scheduled campaign (not only today's: a confirmed broadcast days ahead is rare
    and worth seeing every morning) and the ones still sending."""
    items = []
    now = ctx.now
    for record in state.Campaigns(ctx.store).all():
        status = record["status"]
        if status not in (state.SCHEDULED, state.RUNNING):
            continue
        start = float(record.get("start_at") or record.get("started_at") or now.timestamp())
        confirmed = record.get("confirmed") or {}
        items.append(
            AgendaItem(
                at=max(datetime.fromtimestamp(start, now.tzinfo), now),
                kind="broadcast" if status == state.SCHEDULED else "broadcast_running",
                ref=record["id"],
                detail=record["id"],
                count=int(confirmed.get("count", 0) or 0),
                title=str(record.get("title") or ""),
            )
        )
    return items
