"""The dry-run summary (what would happen) and the delivery report (what happened).

Report numbers come straight from the governor's journal (`ledger.summary`,
`skipped_reasons`, `rows_of`), never from a counter of our own, so they cannot drift from
it. People left out before the journal was written are reported apart ("excluded"), from
the audience snapshot taken at the start. Reactions come from the event store:
- opt-outs (contact.opt_out, new ones only) by people the campaign reached (sent or
  unknown), during the campaign and in the 24 h after it finished;
- replies: a private message from a recipient within 24 h after their own message went
  out; people who opted out in that time count as opt-outs, not as replies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pond import BulkRow, Context, PersonaError, RowStatus, waits_for_staff

from . import audience as aud
from . import state
from .progress import forecast, when
from .spec import Spec

DAY = 24 * 3600.0
LISTED = 10  # ids shown for unknown/failed rows


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _ts(value: object) -> float:
    return value.timestamp() if isinstance(value, datetime) else 0.0


def dry_run(
    ctx: Context, spec: Spec, audience: aud.Audience, *, sample_size: int, at: float
) -> dict[str, Any]:
    """Everything the operator should see before confirming; writes nothing."""
    texts: list[tuple[aud.Recipient, str]] = []
    errors: list[str] = []
    for r in audience.eligible:
        try:
            # One chat id for all samples: the real send's variant choice is untouched.
            texts.append((r, aud.render(ctx, spec, r, chat_id="broadcasts:dry-run")))
        except PersonaError as error:
            errors.append(f"{r.id}: {error}")
    samples = [
        {"to": r.id, "name": r.name, "text": text} for r, text in _spread(ctx, texts, sample_size)
    ]
    lengths = [len(t) for _, t in texts]
    average = int(sum(lengths) / len(lengths)) if lengths else 0
    start = datetime.fromtimestamp(at, ctx.clock.tz)
    outlook = forecast(ctx, len(audience.eligible), average, start=start)
    expires = spec.expires_at
    eta_ts = outlook["eta_ts"]
    counts = audience.counts()
    return {
        "id": spec.id,
        "title": spec.title,
        "copy": spec.copy,
        "variants": len(ctx.persona.render_sample(spec.copy)),
        "audience": _describe_audience(spec),
        "attachment": describe_media(spec),
        "start": when(ctx, spec.start_at),
        "expires": when(ctx, expires),
        "candidates": audience.candidates,
        "eligible": len(audience.eligible),
        "excluded": {r: n for r, n in counts.items() if n},
        "excluded_total": sum(counts.values()),
        "examples": {r: ids[:3] for r, ids in audience.excluded.items() if ids},
        "duplicates": audience.duplicates,
        "unknown_tags": audience.unknown_tags,
        "samples": samples,
        "longest": max(lengths, default=0),
        "cut": max(lengths, default=0) >= ctx.settings.bot.persona_max_chars,
        "render_errors": len(errors),
        "render_error": errors[0] if errors else "",
        "overlap": overlap(ctx, spec.job, [r.id for r in audience.eligible]),
        "in_quiet_hours": ctx.settings.outbox.quiet_hours.contains(start.time()),
        "quiet_end": ctx.settings.outbox.quiet_hours.end.strftime("%H:%M"),
        "late": bool(expires and eta_ts and eta_ts > expires),
        "staff_confirm": not aud.personal(ctx),
        **outlook,
    }


def _spread(
    ctx: Context, texts: list[tuple[aud.Recipient, str]], size: int
) -> list[tuple[aud.Recipient, str]]:
    """Samples from different persona layers first (a VIP and a regular customer read
    different copy), then the first others."""
    chosen: list[tuple[aud.Recipient, str]] = []
    layers: set[str] = set()
    for r, text in texts:
        layer = ctx.persona.layers_for(
            contact_id=None if r.room else r.id, room_id=r.id if r.room else None, tags=r.tags
        )[0]
        if layer not in layers:
            layers.add(layer)
            chosen.append((r, text))
    rest = [pair for pair in texts if pair not in chosen]
    return (chosen + rest)[: max(0, size)]


def overlap(ctx: Context, job: str, ids: Iterable[str]) -> int:
    """Recipients still queued in another active bulk job: the frequency rule will let
    only the first message through."""
    wanted = set(ids)
    queued: set[str] = set()
    for other in ctx.ledger.active_jobs():
        if other != job:
            queued.update(r.recipient for r in ctx.ledger.rows_of(other, RowStatus.PENDING))
    return len(wanted & queued)


def _describe_audience(spec: Spec) -> dict[str, Any]:
    return {
        "kind": spec.audience,
        "segment": spec.segment,
        "count": len(spec.ids),
        "file": spec.file,
    }


def describe_media(spec: Spec) -> dict[str, str]:
    if not spec.media:
        return {}
    m = spec.media
    name = m.get("title") or m.get("path", "").rsplit("/", 1)[-1]
    return {"kind": m["kind"], "name": name, "url": m.get("url", "")}


def report(ctx: Context, record: state.Record) -> dict[str, Any]:
    """The delivery report of one campaign (see the module docstring for each number)."""
    job = f"broadcasts.{record['id']}"
    rows = ctx.ledger.rows_of(job)
    summary = ctx.ledger.summary(job)
    reasons = ctx.ledger.skipped_reasons(job)
    # Rows in a task staff confirm in the client are not skipped: they wait for staff.
    staff = sum(n for r, n in reasons.items() if waits_for_staff(r))
    skipped = {r: n for r, n in reasons.items() if not waits_for_staff(r)}
    by_status: dict[RowStatus, list[BulkRow]] = {}
    for row in rows:
        by_status.setdefault(row.status, []).append(row)
    sent_at = {r.recipient: r.updated_at for r in by_status.get(RowStatus.SENT, [])}
    reached = set(sent_at) | {r.recipient for r in by_status.get(RowStatus.UNKNOWN, [])}
    now = ctx.clock.now().timestamp()
    started = record.get("started_at")
    finished = record.get("finished_at")
    rooms = record["spec"].get("audience") == "rooms"
    snapshot = record.get("audience") or {}
    data: dict[str, Any] = {
        "id": record["id"],
        "title": record["title"],
        "status": record["status"],
        "rooms": rooms,
        "total": len(rows),
        "sent": summary.get("sent", 0),
        "failed": summary.get("failed", 0),
        "unknown": summary.get("unknown", 0),
        "pending": summary.get("pending", 0) + summary.get("sending", 0),
        "held": summary.get("held", 0),
        "skipped": dict(sorted(skipped.items())),
        "skipped_total": summary.get("skipped", 0) - staff,
        "staff": staff,
        "unknown_ids": [r.recipient for r in by_status.get(RowStatus.UNKNOWN, [])][:LISTED],
        "failed_ids": [r.recipient for r in by_status.get(RowStatus.FAILED, [])][:LISTED],
        "failed_reasons": dict(
            sorted(Counter(r.reason for r in by_status.get(RowStatus.FAILED, [])).items())
        ),
        "candidates": snapshot.get("candidates", 0),
        "excluded": dict(snapshot.get("excluded", {})),
        "excluded_total": sum(snapshot.get("excluded", {}).values()),
        "started_at": when(ctx, started),
        "finished_at": when(ctx, finished),
        "opt_out_during": 0,
        "opt_out_after": 0,
        "replied": 0,
        "reply_rate": 0.0,
        "final": False,
        "window_until": "",
    }
    if started is None or rooms:
        return data
    opt_during, opt_after, opted = _opt_outs(ctx, reached, started, finished)
    data["opt_out_during"], data["opt_out_after"] = opt_during, opt_after
    replied = _replies(ctx, sent_at) - opted
    data["replied"] = len(replied)
    data["reply_rate"] = round(100.0 * len(replied) / len(sent_at), 1) if sent_at else 0.0
    last = max(sent_at.values(), default=started)
    window = max(last, finished or last) + DAY
    data["window_until"] = when(ctx, window)
    data["final"] = finished is not None and now >= window
    return data


def _opt_outs(
    ctx: Context, reached: set[str], started: float, finished: float | None
) -> tuple[int, int, set[str]]:
    during, after, who = 0, 0, set()
    for event in ctx.sql.events(kind="contact.opt_out", since=_dt(started)):
        cid = str(event.get("contact_id", ""))
        data = event.get("data")
        if cid not in reached or not (isinstance(data, dict) and data.get("new")):
            continue
        ts = _ts(event.get("ts"))
        if finished is None or ts < finished:
            during += 1
        elif ts < finished + DAY:
            after += 1
        else:
            continue
        who.add(cid)
    return during, after, who


def _replies(ctx: Context, sent_at: dict[str, float]) -> set[str]:
    if not sent_at:
        return set()
    first, last = min(sent_at.values()), max(sent_at.values())
    replied: set[str] = set()
    events = ctx.sql.events(kind="in.message", since=_dt(first), until=_dt(last + DAY))
    for event in events:
        cid = str(event.get("contact_id", ""))
        if cid not in sent_at or event.get("room_id"):
            continue
        ts = _ts(event.get("ts"))
        if sent_at[cid] <= ts < sent_at[cid] + DAY:
            replied.add(cid)
    return replied
