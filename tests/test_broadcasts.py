"""Broadcasts (群发) on the fake clock: dry run, confirmation, the governor's rules during a
run, pause/resume/cancel, restarts, schedules, and a report that matches the journal.

Campaign files are written per test into a campaigns folder under tmp_path; the copy is the
shipped persona key broadcasts/copy_new_tea (variables: name, product, price)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from harness import ChatSim, Transcript

from plugins._broadcasts import report, state
from pond import RowStatus

VARS = '[vars]\nproduct = "桂花乌龙"\nprice = 68\n'


def write_campaign(
    sim_or_dir: ChatSim | Path,
    name: str = "tea",
    *,
    audience: str = 'segment = "vip"',
    start: str = "now",
    extra: str = "",
    copy: str = "broadcasts/copy_new_tea",
    variables: str = VARS,
) -> Path:
    folder = sim_or_dir if isinstance(sim_or_dir, Path) else sim_or_dir.data_dir.parent / "c"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(
        f'title = "{name}"\ncopy = "{copy}"\n{audience}\nstart = "{start}"\n{extra}\n{variables}',
        encoding="utf-8",
    )
    return path


async def make(tmp_path: Path, *, start: datetime | None = None, **env: str) -> ChatSim:
    settings = {
        "BROADCASTS_CAMPAIGNS_DIR": str(tmp_path / "c"),
        # The minute check every 30 simulated minutes keeps multi-day runs quick; tests
        # about start times set it back to every minute.
        "JOB_BROADCASTS_TICK_CRON": "*/30 * * * *",
        **env,
    }
    kwargs: dict[str, Any] = {"start": start} if start else {}
    return await ChatSim.create(tmp_path / "data", plugins=["broadcasts"], env=settings, **kwargs)


def people(sim: ChatSim, n: int, tags: tuple[str, ...] = ("vip",), prefix: str = "c") -> list[str]:
    now = sim.clock.now()
    ids = [f"{prefix}{i:04d}" for i in range(n)]
    for cid in ids:
        sim.app.book.upsert(cid, now, name=f"name-{cid}")
        if tags:
            sim.app.book.tag(cid, tags, now)
    return ids


def recorded(sim: ChatSim, what: str) -> list[dict[str, Any]]:
    return [e["data"] for e in sim.app.store.sql.events(kind=f"broadcasts.{what}")]  # type: ignore[misc]


def customers(said: Transcript) -> list[str]:
    return [s.to for s in said if s.to != "admin"]


def record_of(sim: ChatSim, cid: str = "tea") -> dict[str, Any]:
    found = state.Campaigns(sim.app.store.namespace("broadcasts")).get(cid)
    assert found is not None
    return found


def assert_report_matches_journal(
    sim: ChatSim, cid: str = "tea", before_restart: list[str] | None = None
) -> dict[str, Any]:
    """Every number of the report is the journal's; every "sent" row was delivered once
    (`before_restart`: deliveries by the transport of an App that was since restarted)."""
    job = f"broadcasts.{cid}"
    rows = sim.app.ledger.rows_of(job)
    by = Counter(r.status for r in rows)
    data = report.report(sim.app.context("broadcasts"), record_of(sim, cid))
    assert data["total"] == len(rows)
    assert data["sent"] == by[RowStatus.SENT]
    assert data["failed"] == by[RowStatus.FAILED]
    assert data["unknown"] == by[RowStatus.UNKNOWN]
    assert data["held"] == by[RowStatus.HELD]
    assert data["pending"] == by[RowStatus.PENDING] + by[RowStatus.SENDING]
    assert data["skipped_total"] == by[RowStatus.SKIPPED] == sum(data["skipped"].values())
    reasons = Counter(r.reason for r in rows if r.status is RowStatus.SKIPPED)
    assert data["skipped"] == dict(reasons)
    delivered = [p.action.to for p in sim.transport.performed if p.action.job == job]
    delivered += before_restart or []
    assert len(delivered) == len(set(delivered)), "a recipient got the campaign twice"
    sent = {r.recipient for r in rows if r.status is RowStatus.SENT}
    unknown = {r.recipient for r in rows if r.status is RowStatus.UNKNOWN}
    assert sent <= set(delivered) <= sent | unknown
    return data


async def start(sim: ChatSim, cid: str = "tea") -> Transcript:
    """Create, dry-run and confirm with the count the dry run gave."""
    assert (await sim.say("admin", f"群发创建 {cid}")).keys == ["broadcasts/created"]
    assert (await sim.say("admin", f"群发预览 {cid}")).keys == ["broadcasts/dry_run"]
    count = recorded(sim, "dry_run")[-1]["eligible"]
    return await sim.say("admin", f"群发开始 {cid} {count}")


# -- dry run ------------------------------------------------------------------------------------
async def test_dry_run_of_a_1000_contact_segment_lists_exclusions_and_sends_nothing(
    tmp_path: Path,
) -> None:
    sim = await make(tmp_path)
    ids = people(sim, 1000)
    now = sim.clock.now()
    for cid in ids[:20]:
        sim.app.ledger.set_opt_out(cid, now.timestamp(), "keyword")
    for cid in ids[20:35]:
        sim.app.book.upsert(cid, now, is_friend=False)
    for cid in ids[35:45]:
        sim.app.book.tag(cid, ["churned"], now)
    for cid in ids[45:50]:
        sim.app.book.upsert(cid, now, stage="churned")
    for cid in ids[50:80]:
        sim.app.ledger.note_marketing(cid, now.timestamp() - 3600)
    # Several reasons at once: counted once, under the first (opt-out).
    sim.app.book.tag(ids[0], ["churned"], now)
    sim.app.ledger.note_marketing(ids[1], now.timestamp() - 60)
    # Marketing long enough ago does not exclude.
    sim.app.ledger.note_marketing(ids[999], now.timestamp() - 4 * 24 * 3600)
    write_campaign(sim)
    await sim.say("admin", "群发创建 tea")
    said = await sim.say("admin", "群发预览 tea")
    assert said.keys == ["broadcasts/dry_run"]
    [dry] = recorded(sim, "dry_run")
    assert dry["excluded"] == {
        "opt_out": 20,
        "not_friend": 15,
        "churned": 15,
        "frequency": 30,
    }
    assert dry["eligible"] == 1000 - 80
    # Nothing sent to anyone, nothing journaled, nothing counted against the caps.
    assert customers(said) == []
    assert sim.app.ledger.job_status("broadcasts.tea") is None
    assert sim.app.ledger.rows_of("broadcasts.tea") == []
    assert sim.app.ledger.counts(now.date().isoformat()).get("broadcast", 0) == 0
    assert customers(await sim.advance(3600)) == []
    await sim.close()


async def test_dry_run_finds_unknown_ids_duplicates_and_tag_typos(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    people(sim, 3)
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "list.csv").write_text("contact_id\nc0000\nc0001\nghost\nc0000\n", "utf-8")
    write_campaign(sim, "listed", audience='csv = "list.csv"')
    write_campaign(sim, "typo", audience='segment = "vipp or vip"')
    await sim.say("admin", "群发创建 listed")
    await sim.say("admin", "群发预览 listed")
    await sim.say("admin", "群发创建 typo")
    await sim.say("admin", "群发预览 typo")
    listed, typo = recorded(sim, "dry_run")
    assert listed["excluded"] == {"unknown": 1} and listed["eligible"] == 2
    assert typo["eligible"] == 3
    assert "vipp" in (await sim.say("admin", "群发预览 typo")).texts[0]  # a likely typo
    said = await sim.say("admin", "群发预览 listed")
    assert "ghost" in said.texts[0]  # the operator sees which id is unknown
    await sim.close()


async def test_an_empty_segment_dry_runs_to_zero_and_cannot_be_started(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    people(sim, 5, tags=("regular",))
    write_campaign(sim)
    await sim.say("admin", "群发创建 tea")
    await sim.say("admin", "群发预览 tea")
    assert recorded(sim, "dry_run")[-1]["eligible"] == 0
    for attempt in ("群发开始 tea", "群发开始 tea 0", "群发开始 tea 5"):
        assert (await sim.say("admin", attempt)).keys == ["broadcasts/refused"]
        assert recorded(sim, "refused")[-1]["code"] == "empty"
    assert sim.app.ledger.job_status("broadcasts.tea") is None
    await sim.close()


async def test_start_needs_the_count_the_dry_run_showed(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    people(sim, 4)
    write_campaign(sim)
    await sim.say("admin", "群发创建 tea")
    shown = await sim.say("admin", "群发开始 tea")  # no count: the dry run, nothing starts
    assert shown.keys == ["broadcasts/dry_run"]
    assert (await sim.say("admin", "群发开始 tea 40")).keys == ["broadcasts/refused"]
    assert recorded(sim, "refused")[-1]["code"] == "count_mismatch"
    assert sim.app.ledger.job_status("broadcasts.tea") is None
    said = await sim.say("admin", "群发开始 tea 4")
    assert said.keys[0] == "broadcasts/changed"
    assert sorted(customers(said)) == ["c0000", "c0001", "c0002", "c0003"]
    assert record_of(sim)["confirmed"]["count"] == 4
    # Starting again is refused and adds nobody.
    assert (await sim.say("admin", "群发开始 tea 4")).keys == ["broadcasts/refused"]
    assert len(sim.app.ledger.rows_of("broadcasts.tea")) == 4
    await sim.close()


# -- bad input -------------------------------------------------------------------------------------
async def test_copy_outside_the_plugins_keys_is_refused_even_if_a_prefix_allows_it(
    tmp_path: Path,
) -> None:
    """BROADCASTS_COPY_PREFIXES cannot open another plugin's copy to 群发: the plugin renders
    only broadcasts/ keys, so the campaign is refused when it is created, not at 9:00."""
    sim = await make(tmp_path, BROADCASTS_COPY_PREFIXES="broadcasts/copy_,greeter/")
    people(sim, 2)
    write_campaign(sim, "hello", copy="greeter/hello", variables="")
    said = await sim.say("admin", "群发创建 hello")
    assert said.keys == ["broadcasts/refused"]
    assert recorded(sim, "refused")[-1]["code"] == "copy_not_allowed"
    assert "greeter/hello" in said.texts[0] and "broadcasts/" in said.texts[0]
    assert record_of_or_none(sim, "hello") is None
    await sim.close()


async def test_bad_campaign_files_are_refused_at_creation_with_a_reason(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    people(sim, 2)
    cases = {
        "badseg": ({"audience": 'segment = "vip and"'}, "segment"),
        "nokey": ({"copy": "broadcasts/copy_nope"}, "copy_unknown"),
        "notcopy": ({"copy": "core/optout_confirm"}, "copy_not_allowed"),
        "novar": ({"variables": ""}, "copy_render"),
        "noimage": ({"extra": 'image = "missing.jpg"'}, "media_missing"),
        "past": ({"start": "2026-11-23 09:00"}, "start_past"),
        "badtime": ({"start": "tomorrow"}, "start_bad"),
        "twice": ({"audience": 'segment = "vip"\nrooms = ["r1"]'}, "audience_many"),
        "nobody": ({"audience": ""}, "audience_missing"),
        "oldend": ({"extra": 'expires = "2026-11-23 09:00"'}, "expires_past"),
        "nocsv": ({"audience": 'csv = "none.csv"'}, "csv_missing"),
    }
    for name, (kwargs, code) in cases.items():
        write_campaign(sim, name, **kwargs)  # type: ignore[arg-type]
        said = await sim.say("admin", f"群发创建 {name}")
        assert said.keys == ["broadcasts/refused"], name
        assert recorded(sim, "refused")[-1]["code"] == code, name
        assert record_of_or_none(sim, name) is None
    (tmp_path / "c" / "typo.toml").write_text('title = "x"\ncopy = \n', "utf-8")
    typo = (await sim.say("admin", "群发创建 typo")).texts[0]
    assert recorded(sim, "refused")[-1]["code"] == "toml"
    assert "第 2 行第 8 列附近写法不对" in typo and "Invalid" not in typo
    badseg = (await sim.say("admin", "群发创建 badseg")).texts[0]
    assert "「vip and」没写完" in badseg and "ends too early" not in badseg
    badtime = (await sim.say("admin", "群发创建 badtime")).texts[0]
    assert "开始时间 'tomorrow' 不对" in badtime and "expected" not in badtime
    await sim.say("admin", "群发创建 ghost")
    assert recorded(sim, "refused")[-1]["code"] == "file_missing"
    await sim.say("admin", "群发创建 ../../etc/passwd")  # chat takes names, never paths
    assert recorded(sim, "refused")[-1]["code"] == "path_in_chat"
    assert customers(await sim.advance(1800)) == []
    await sim.close()


def record_of_or_none(sim: ChatSim, cid: str) -> dict[str, Any] | None:
    return state.Campaigns(sim.app.store.namespace("broadcasts")).get(cid)


async def test_a_started_campaign_cannot_be_overwritten_from_its_file(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    people(sim, 2)
    write_campaign(sim)
    await start(sim)
    assert (await sim.say("admin", "群发创建 tea")).keys == ["broadcasts/refused"]
    assert recorded(sim, "refused")[-1]["code"] == "exists"
    await sim.close()


async def test_media_is_checked_and_attached(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    people(sim, 2)
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "tea.jpg").write_bytes(b"\xff\xd8\xff fake jpeg")
    write_campaign(sim, extra='image = "tea.jpg"')
    said = await start(sim)
    sent = [p.action for p in sim.transport.performed if p.action.job == "broadcasts.tea"]
    assert len(sent) == 2 and len(customers(said)) == 2
    assert all(a.media is not None and a.media.path.endswith("tea.jpg") for a in sent)
    await sim.close()


# -- running under the governor --------------------------------------------------------------------
async def test_daily_cap_defers_the_remainder_to_the_next_day(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_BROADCAST="3")
    people(sim, 5)
    write_campaign(sim)
    today = customers(await start(sim)) + customers(await sim.advance(3600))
    assert today == ["c0000", "c0001", "c0002"]
    assert sim.app.ledger.summary("broadcasts.tea") == {"sent": 3, "pending": 2}
    status = await sim.say("admin", "群发状态 tea")
    assert status.keys == ["broadcasts/status"]
    from plugins._broadcasts import progress

    data = progress.progress(sim.app.context("broadcasts"), record_of(sim))
    assert (data["sent"], data["total"], data["waiting"]) == (3, 5, "cap")
    assert data["eta"].startswith("11-24 ")  # tomorrow, after the cap resets
    tomorrow = await sim.advance(24 * 3600)
    assert customers(tomorrow) == ["c0003", "c0004"]
    assert all(s.at.date() > datetime(2026, 11, 23).date() for s in tomorrow if s.to != "admin")
    assert record_of(sim)["status"] == state.DONE
    assert "broadcasts/report" in tomorrow.keys  # the admins hear it finished
    assert_report_matches_journal(sim)
    await sim.close()


async def test_quiet_hours_hold_the_campaign_until_morning(tmp_path: Path) -> None:
    sim = await make(tmp_path, start=datetime(2026, 11, 23, 22, 30))
    people(sim, 3)
    write_campaign(sim)
    said = await start(sim)
    assert customers(said) == []
    assert progress_of(sim)["waiting"] == "quiet"
    morning = await sim.advance(12 * 3600)
    sent = [s for s in morning if s.to != "admin"]
    assert [s.to for s in sent] == ["c0000", "c0001", "c0002"]
    assert all(s.at >= datetime(2026, 11, 24, 8, 0, tzinfo=sim.clock.tz) for s in sent)
    await sim.close()


def progress_of(sim: ChatSim, cid: str = "tea") -> dict[str, Any]:
    from plugins._broadcasts import progress

    return progress.progress(sim.app.context("broadcasts"), record_of(sim, cid))


async def test_frequency_and_opt_out_are_checked_again_at_send_time(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_BROADCAST="2", OUTBOX_MARKETING_MIN_INTERVAL_H="72")
    people(sim, 5)
    write_campaign(sim)
    await start(sim)  # c0000, c0001 today; the rest tomorrow
    # Overnight, c0002 gets another campaign's message and c0003 opts out.
    sim.app.ledger.note_marketing("c0002", sim.clock.now().timestamp())
    assert (await sim.say("c0003", "退订")).keys == ["core/optout_confirm"]
    tomorrow = await sim.advance(24 * 3600)
    assert customers(tomorrow) == ["c0004"]
    data = assert_report_matches_journal(sim)
    assert data["skipped"] == {"frequency": 1, "opt_out": 1}
    assert data["sent"] == 3
    await sim.close()


async def test_pause_holds_every_row_resume_continues_cancel_stops(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_BROADCAST="2")
    people(sim, 6)
    write_campaign(sim)
    await start(sim)  # 2 sent today
    paused = await sim.say("admin", "群发暂停 tea")
    assert paused.keys == ["broadcasts/changed"]
    assert sim.app.ledger.summary("broadcasts.tea") == {"sent": 2, "held": 4}
    assert customers(await sim.advance(2 * 24 * 3600)) == []  # days pass: nothing goes out
    assert record_of(sim)["status"] == state.PAUSED
    resumed = await sim.say("admin", "群发继续 tea")
    assert resumed.keys[0] == "broadcasts/changed"
    assert customers(resumed) + customers(await sim.advance(1800)) == ["c0002", "c0003"]
    cancelled = await sim.say("admin", "群发取消 tea")
    assert cancelled.keys == ["broadcasts/changed"]
    assert customers(await sim.advance(3 * 24 * 3600)) == []
    data = assert_report_matches_journal(sim)
    assert data["sent"] == 4 and data["skipped"] == {"cancelled": 2}
    assert record_of(sim)["status"] == state.CANCELLED
    assert (await sim.say("admin", "群发继续 tea")).keys == ["broadcasts/refused"]
    await sim.close()


async def test_restart_mid_run_resumes_the_rest_reports_unknown_never_resends(
    tmp_path: Path,
) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_BROADCAST="2")
    people(sim, 5)
    write_campaign(sim)
    await start(sim)  # c0000, c0001 sent today
    # A crash between the durable "sending" mark and the transport's answer.
    sim.app.ledger.mark("broadcasts.tea", "c0002", RowStatus.SENDING, 0.0, expect=RowStatus.PENDING)
    earlier = [p.action.to for p in sim.transport.performed if p.action.job]
    await sim.restart()
    after = await sim.advance(2 * 24 * 3600)
    assert customers(after) == ["c0003", "c0004"]  # c0002 is not sent again
    data = assert_report_matches_journal(sim, before_restart=earlier)
    assert (data["sent"], data["unknown"], data["unknown_ids"]) == (4, 1, ["c0002"])
    assert record_of(sim)["status"] == state.DONE
    assert (await sim.say("admin", "群发报告 tea")).keys == ["broadcasts/report"]
    [numbers] = recorded(sim, "report")
    assert (numbers["sent"], numbers["unknown"], numbers["total"]) == (4, 1, 5)
    await sim.close()


# -- schedules -----------------------------------------------------------------------------------
async def test_a_scheduled_campaign_starts_at_its_time_exactly_once(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    people(sim, 3)
    write_campaign(sim, start="2026-11-23 14:00")
    said = await start(sim)
    assert said.keys == ["broadcasts/changed"] and customers(said) == []
    assert record_of(sim)["status"] == state.SCHEDULED
    assert customers(await sim.advance(3 * 3600 + 59 * 60)) == []  # until 13:59
    await sim.restart()  # a deploy before the start changes nothing
    started = await sim.advance(120)
    assert customers(started) == ["c0000", "c0001", "c0002"]
    first = min(s.at for s in started if s.to != "admin")
    assert first >= datetime(2026, 11, 23, 14, 0, tzinfo=sim.clock.tz)
    assert "broadcasts/alert" in started.keys
    await sim.restart()  # restarts and later checks add nobody
    assert customers(await sim.advance(3600)) == []
    assert len(sim.app.ledger.rows_of("broadcasts.tea")) == 3
    assert [e["rows"] for e in recorded(sim, "started")] == [3]
    await sim.close()


async def test_a_campaign_the_bot_was_down_for_is_missed_not_sent_late(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    people(sim, 3)
    write_campaign(sim, start="2026-11-23 11:00")
    await start(sim)
    await sim.app.stop()  # the bot is down from 10:00 ...
    sim.clock.set(datetime(2026, 11, 23, 19, 0))  # ... until 19:00, beyond BROADCASTS_MAX_LATE_H
    await sim._boot()
    said = await sim.advance(120)
    assert customers(said) == []
    assert record_of(sim)["status"] == state.MISSED
    assert "broadcasts/alert" in said.keys
    assert sim.app.ledger.job_status("broadcasts.tea") is None
    await sim.close()


async def test_a_grown_audience_blocks_the_start_and_tells_the_admins(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    people(sim, 5)
    write_campaign(sim, start="2026-11-23 12:00")
    await start(sim)
    people(sim, 3, prefix="new")  # someone tagged more people vip meanwhile (+60 %)
    said = await sim.advance(2 * 3600 + 120)
    assert customers(said) == []
    assert record_of(sim)["status"] == state.BLOCKED
    assert record_of(sim)["note"]["code"] == "grew"
    assert "broadcasts/alert" in said.keys
    # The operator looks again and confirms the new number: it starts at once.
    await sim.say("admin", "群发预览 tea")
    assert recorded(sim, "dry_run")[-1]["eligible"] == 8
    await sim.say("admin", "群发开始 tea 8")
    assert record_of(sim)["status"] in (state.RUNNING, state.DONE)
    await sim.close()


async def test_an_expiry_stops_what_is_left(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_CAP_BROADCAST="2")
    people(sim, 5)
    write_campaign(sim, extra='expires = "2026-11-23 23:30"')
    await start(sim)
    said = await sim.advance(24 * 3600)
    assert customers(said) == []
    assert record_of(sim)["status"] == state.EXPIRED
    data = assert_report_matches_journal(sim)
    assert data["sent"] == 2 and data["skipped"] == {"expired": 3}
    assert "broadcasts/alert" in said.keys
    await sim.close()


# -- rooms ---------------------------------------------------------------------------------------
async def test_a_room_campaign_goes_to_known_rooms_only(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    await sim.say("alice", "大家好", room="r-known")
    write_campaign(
        sim,
        audience='rooms = ["r-known", "r-typo"]',
        copy="broadcasts/copy_tea_room",
        variables='[vars]\ndate = "周六"\n',
    )
    said = await start(sim)
    assert customers(said) == ["r-known"]
    [action] = [p.action for p in sim.transport.performed if p.action.job]
    assert action.contact_id == ""  # a room: no opt-out or frequency bookkeeping
    assert record_of(sim)["audience"]["excluded"] == {"unknown": 1}
    data = assert_report_matches_journal(sim)
    assert data["rooms"] is True
    await sim.close()


# -- report ----------------------------------------------------------------------------------------
async def test_report_counts_replies_and_opt_outs_in_their_windows(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_MARKETING_MIN_INTERVAL_H="0")
    people(sim, 5)
    write_campaign(sim)
    await start(sim)
    await sim.advance(1800)
    assert record_of(sim)["status"] == state.DONE
    await sim.say("c0000", "我要一份新茶")  # a reply within 24 h
    await sim.say("c0001", "退订")  # an opt-out after the end, within 24 h (not a reply)
    await sim.advance(25 * 3600)
    await sim.say("c0002", "还有吗")  # too late to count as a reply
    await sim.say("c0003", "TD")  # too late to count as an opt-out of this campaign
    data = assert_report_matches_journal(sim)
    assert data["replied"] == 1 and data["reply_rate"] == 20.0
    assert (data["opt_out_during"], data["opt_out_after"]) == (0, 1)
    assert data["final"] is True
    await sim.close()


async def test_the_final_report_reaches_the_admins_a_day_later(tmp_path: Path) -> None:
    sim = await make(tmp_path, OUTBOX_MARKETING_MIN_INTERVAL_H="0")
    people(sim, 2)
    write_campaign(sim)
    await start(sim)
    finished = await sim.advance(1800)
    assert [s.key for s in finished if s.to == "admin"] == ["broadcasts/report"]
    later = await sim.advance(25 * 3600)
    assert [s.key for s in later if s.to == "admin"] == ["broadcasts/report"]
    assert [s.key for s in await sim.advance(48 * 3600) if s.to == "admin"] == []
    await sim.close()


async def test_status_lists_every_campaign(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    people(sim, 2)
    write_campaign(sim, "tea")
    write_campaign(sim, "later", start="2026-11-30 10:00")
    await start(sim, "tea")
    await start(sim, "later")
    said = await sim.say("admin", "群发状态")
    assert said.keys == ["broadcasts/status"]
    assert "tea" in said.texts[0] and "later" in said.texts[0]
    assert (await sim.say("admin", "群发状态 nope")).keys == ["broadcasts/refused"]
    assert (await sim.say("admin", "群发报告")).keys == ["broadcasts/refused"]
    assert (await sim.say("mallory", "群发状态")).keys == []  # admins only
    await sim.close()


def test_shipped_campaign_files_are_valid(tmp_path: Path) -> None:
    """Every example in persona/broadcasts/campaigns loads (a bad example teaches badly)."""
    from harness import ROOT

    from plugins._broadcasts.spec import load
    from pond import Persona

    persona = Persona(ROOT / "persona")
    tz = ZoneInfo("Asia/Shanghai")
    now = datetime(2026, 11, 23, 10, 0, tzinfo=tz)
    files = sorted((ROOT / "persona" / "broadcasts" / "campaigns").glob("*.toml"))
    assert files
    for path in files:
        spec = load(path, now=now, tz=tz, persona=persona, copy_prefixes=["broadcasts/"])
        assert spec.id == path.stem
