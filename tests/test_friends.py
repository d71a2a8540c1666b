"""The friends plugin as operators and customers meet it: friend requests and channels,
the review queue, tagging, follow-up sequences, paced adding, churn, data rights, CSV."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from harness import ROOT, ChatSim, Transcript

import plugins.friends as friends
from plugins._friends.state import Ctx
from pond import Contact, StartupError, rights
from pond.transports.base import TransportError

QUIET = {"OUTBOX_QUIET_HOURS": "off", "FRIENDS_GREET_DELAY_S": "10"}


def persona_with(tmp_path: Path, files: Mapping[str, str]) -> Path:
    """A copy of the project's persona folder with some files replaced."""
    folder = tmp_path / "persona"
    if not folder.exists():
        shutil.copytree(ROOT / "persona", folder)
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    return folder


async def make(tmp_path: Path, env: Mapping[str, str] | None = None, **kw: object) -> ChatSim:
    return await ChatSim.create(
        tmp_path / "data",
        plugins=["friends"],
        env={**QUIET, **(env or {})},
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await make(tmp_path)
    yield chat
    await chat.close()


def kinds(said: Transcript) -> list[tuple[str, str, str]]:
    return [(s.kind, s.to, s.key) for s in said]


def events(sim: ChatSim, kind: str) -> list[dict[str, object]]:
    return sim.app.store.sql.events(kind=kind)


# -- friend requests ------------------------------------------------------------------------------
async def test_channel_code_request_is_accepted_tagged_and_greeted(sim: ChatSim) -> None:
    said = await sim.friend_request(Contact("alice", name="小美"), "来自门店A1")
    assert kinds(said) == [
        ("accept_friend", "alice", ""),
        ("send", "alice", "friends/welcome"),
    ]
    accept, greet = said.sent
    assert (greet.at - accept.at).total_seconds() >= 10  # a human-like pause
    customer = sim.app.book.get("alice")
    assert customer is not None
    assert customer.channel == "A1" and customer.is_friend and customer.stage == "new"
    assert {"channel:A1", "store"} <= customer.tags
    assert customer.consent["contact"]["source"] == "channel:A1"
    [request] = events(sim, "friends.request")
    assert request["data"] == {"verdict": "accept", "rule": "channel", "channel": "A1"}
    assert "来自门店A1" not in json.dumps(
        sim.app.store.sql.events(), ensure_ascii=False, default=str
    )


async def test_a_code_alone_or_an_accept_keyword_is_enough_but_a_longer_code_is_not(
    sim: ChatSim,
) -> None:
    assert kinds(await sim.friend_request("bob", "a2"))[0] == ("accept_friend", "bob", "")
    assert sim.app.book.get("bob").channel == "A2"  # type: ignore[union-attr]
    assert kinds(await sim.friend_request("carol", "我是小鱼塘的老客户"))[0][0] == "accept_friend"
    assert sim.app.book.get("carol").channel == ""  # type: ignore[union-attr]
    assert kinds(await sim.friend_request("dave", "A12")) == [
        ("send", "admin", "friends/review_alert")
    ]


async def test_unknown_request_is_queued_and_admins_notified_then_accepted(sim: ChatSim) -> None:
    said = await sim.friend_request(Contact("erin", name="Erin"), "你好呀")
    assert kinds(said) == [("send", "admin", "friends/review_alert")]
    assert "你好呀" in said.texts[0]  # the admin sees the hello to decide
    [pending] = friends.pending_requests(friends_ctx(sim))
    assert pending["contact_id"] == "erin" and pending["n"] == 1 and pending["hello"] == "你好呀"
    [item] = await friends.reviews(friends_ctx(sim))
    assert (item.kind, item.command, item.args, item.contact_id) == (
        "friend_request",
        "accept",
        ("1",),
        "erin",
    )
    assert (await sim.say("admin", "好友申请")).keys == ["friends/cmd_requests"]
    said = await sim.say("admin", "通过 1 vip")
    assert kinds(said) == [
        ("send", "admin", "friends/cmd_accepting"),
        ("accept_friend", "erin", ""),
        ("send", "erin", "friends/welcome"),
    ]
    assert friends.pending_requests(friends_ctx(sim)) == []
    assert {"vip"} <= sim.app.book.tags("erin")
    consent = sim.app.book.get("erin").consent["contact"]  # type: ignore[union-attr]
    assert consent["source"] == "admin:admin"


async def test_asking_again_updates_the_queue_without_a_new_alert(sim: ChatSim) -> None:
    await sim.friend_request("erin", "你好")
    assert kinds(await sim.friend_request("erin", "在吗")) == []
    [pending] = friends.pending_requests(friends_ctx(sim))
    assert pending["hello"] == "在吗"


async def test_blocked_requests_are_ignored(sim: ChatSim) -> None:
    assert kinds(await sim.friend_request("spam", "兼职刷单日赚500")) == []
    [request] = events(sim, "friends.request")
    assert request["data"]["verdict"] == "block"  # type: ignore[index]
    await sim.friend_request("pest", "hello")
    assert (await sim.say("admin", "拉黑 1")).keys == ["friends/cmd_blocked"]
    assert friends.pending_requests(friends_ctx(sim)) == []
    assert kinds(await sim.friend_request("pest", "A1")) == []  # even with a channel code
    assert (await sim.say("admin", "解除拉黑 pest")).keys == ["friends/cmd_blocked"]
    assert kinds(await sim.friend_request("pest", "A1"))[0][0] == "accept_friend"


async def test_reject_and_unknown_references_get_clear_answers(sim: ChatSim) -> None:
    await sim.friend_request("erin", "hi")
    assert (await sim.say("admin", "拒绝 erin")).keys == ["friends/cmd_rejected"]
    assert (await sim.say("admin", "通过 1")).keys == ["friends/cmd_no_request"]
    assert (await sim.say("admin", "通过")).keys == ["friends/cmd_usage"]
    assert (await sim.say("admin", "客户资料 nobody")).keys == ["friends/cmd_unknown_contact"]
    assert (await sim.say("admin", "阶段 nobody customer")).keys == ["friends/cmd_unknown_contact"]
    assert (await sim.say("admin", "跟进 nobody")).keys == ["friends/cmd_unknown_contact"]
    await sim.friend_request("alice", "A1")
    assert (await sim.say("admin", "阶段 alice vip")).keys == ["friends/cmd_bad_stage"]
    assert (await sim.say("admin", "人群 vip and")).keys == ["friends/cmd_bad_segment"]
    said = await sim.say("admin", "人群 channel:A1 and not churned")
    assert said.keys == ["friends/cmd_segment"] and "alice" in said.texts[0]
    assert (await sim.say("admin", "客户资料 alice")).keys == ["friends/cmd_contact"]
    assert (await sim.say("admin", "群成员加好友 nowhere@chatroom 门店")).keys == [
        "friends/cmd_unknown_room"
    ]
    assert sim.app.errors == []


async def test_accepts_over_the_daily_cap_wait_for_tomorrow(tmp_path: Path) -> None:
    sim = await make(tmp_path, {"OUTBOX_CAP_ACCEPT_FRIEND": "1"})
    await sim.friend_request("alice", "A1")
    said = await sim.friend_request("bob", "A1")
    assert [s.kind for s in said] == ["send"]  # only the cap alert to the admin
    [waiting] = events(sim, "friends.accept_waiting")
    assert waiting["contact_id"] == "bob"
    said = await sim.advance(86400)
    assert ("accept_friend", "bob", "") in kinds(said)
    assert sim.app.book.get("bob").is_friend  # type: ignore[union-attr]
    await sim.close()


async def test_a_channel_layer_overrides_the_greeting(tmp_path: Path) -> None:
    toml = (ROOT / "persona" / "persona.toml").read_text(encoding="utf-8")
    folder = persona_with(
        tmp_path,
        {
            "persona.toml": toml + '\n[layers.live]\ntags = ["channel:LIVE"]\n',
            "_layers/live/friends/welcome.j2": (
                '{#\nname = "x"\nchannel = "LIVE"\nchannel_name = "y"\n#}\n'
                "直播间专属欢迎 {{ name }}"
            ),
        },
    )
    sim = await make(tmp_path, {"BOT_PERSONA_DIR": str(folder)})
    live = await sim.friend_request("viewer", "直播间来的")
    store = await sim.friend_request("walker", "A1")
    assert live.keys == store.keys == ["friends/welcome"]
    assert live.texts[0].startswith("直播间专属欢迎") and not store.texts[0].startswith("直播间")
    await sim.close()


# -- tags and segments ----------------------------------------------------------------------------
async def test_keywords_in_messages_become_tags(sim: ChatSim) -> None:
    assert (await sim.say("alice", "有没有好喝的铁观音")).keys == []  # observes, never answers
    assert "interest:oolong" in sim.app.book.tags("alice")
    await sim.say("bob", "@阿鱼 想买乌龙", room="r1@chatroom", mention=True)
    assert "interest:oolong" not in sim.app.book.tags("bob")  # that rule is private only
    await sim.say("bob", "有礼盒吗", room="r1@chatroom")
    assert "intent:gift" in sim.app.book.tags("bob")  # scope = all
    [tagged, *_] = events(sim, "friends.tagged")
    assert tagged["data"] == {"tags": ["interest:oolong"], "source": "keyword"}
    assert sim.app.book.select("interest:oolong or intent:gift") == ["alice", "bob"]


# -- follow-up sequences ---------------------------------------------------------------------------
SOP = """
[sop]
anchor = "friend_added"
exit_on_reply = true

[[sop.steps]]
after = "0d"
key = "friends/fu_welcome"

[[sop.steps]]
after = "1d"
key = "friends/fu_value"

[[sop.steps]]
after = "3d"
key = "friends/fu_offer"
"""
SOP_ENV = {"OUTBOX_MARKETING_MIN_INTERVAL_H": "12", "JOB_FRIENDS_TICK_CRON": "*/30 * * * *"}


async def sop_sim(tmp_path: Path) -> ChatSim:
    folder = persona_with(tmp_path, {"friends/followups.toml": SOP})
    return await make(tmp_path, {**SOP_ENV, "BOT_PERSONA_DIR": str(folder)})


def followup_days(sim: ChatSim, said: list[Transcript], who: str) -> list[tuple[str, int]]:
    start = datetime(2026, 11, 23, tzinfo=sim.clock.tz)
    return [
        (s.key, (s.at - start).days)
        for t in said
        for s in t
        if s.to == who and s.key.startswith("friends/fu_")
    ]


async def test_a_sequence_runs_day_0_1_3_and_stops_on_optout_and_reply(tmp_path: Path) -> None:
    sim = await sop_sim(tmp_path)
    for who in ("alice", "bob", "carol"):
        await sim.friend_request(who, "A1")
    said = [await sim.advance(3600)]
    assert followup_days(sim, said, "alice") == [("friends/fu_welcome", 0)]
    said.append(await sim.advance(86400))
    await sim.say("bob", "退订")  # opt-out: stops, recorded as opt_out
    await sim.say("carol", "好的谢谢")  # a reply: the exit condition
    said.append(await sim.advance(4 * 86400))
    assert followup_days(sim, said, "alice") == [
        ("friends/fu_welcome", 0),
        ("friends/fu_value", 1),
        ("friends/fu_offer", 3),
    ]
    assert followup_days(sim, said, "bob") == [("friends/fu_welcome", 0), ("friends/fu_value", 1)]
    assert followup_days(sim, said, "carol") == followup_days(sim, said, "bob")
    stops = {e["contact_id"]: e["data"]["reason"] for e in events(sim, "friends.followup_stopped")}  # type: ignore[index]
    assert stops == {"bob": "opt_out", "carol": "replied"}
    assert (await sim.say("admin", "跟进 alice")).keys == ["friends/cmd_followups"]
    await sim.close()


async def test_a_restart_in_the_middle_neither_skips_nor_repeats(tmp_path: Path) -> None:
    sim = await sop_sim(tmp_path)
    for who in ("alice", "bob"):
        await sim.friend_request(who, "A1")
    said = [await sim.advance(36 * 3600)]
    await sim.restart()
    said.append(await sim.advance(3 * 86400))
    for who in ("alice", "bob"):
        assert followup_days(sim, said, who) == [
            ("friends/fu_welcome", 0),
            ("friends/fu_value", 1),
            ("friends/fu_offer", 3),
        ]
    await sim.close()


async def test_steps_inside_the_frequency_window_are_postponed_not_lost(tmp_path: Path) -> None:
    folder = persona_with(tmp_path, {"friends/followups.toml": SOP})
    sim = await make(
        tmp_path,
        {
            "OUTBOX_MARKETING_MIN_INTERVAL_H": "48",
            "JOB_FRIENDS_TICK_CRON": "0 * * * *",
            "BOT_PERSONA_DIR": str(folder),
        },
    )
    await sim.friend_request("alice", "A1")
    said = [await sim.advance(6 * 86400)]
    assert followup_days(sim, said, "alice") == [
        ("friends/fu_welcome", 0),
        ("friends/fu_value", 2),
        ("friends/fu_offer", 4),
    ]
    await sim.close()


async def test_tag_and_purchase_anchors_and_exit_segments(tmp_path: Path) -> None:
    sop = """
[vip_care]
anchor = "tagged:vip"
exit_on_reply = false
exit = "purchased"
[[vip_care.steps]]
after = "1h"
key = "friends/fu_value"
[[vip_care.steps]]
after = "2d"
key = "friends/fu_offer"

[after_sale]
anchor = "purchased"
exit_on_reply = false
[[after_sale.steps]]
after = "1d"
key = "friends/fu_welcome"
condition = "not vip"
"""
    folder = persona_with(tmp_path, {"friends/followups.toml": sop})
    sim = await make(tmp_path, {**SOP_ENV, "BOT_PERSONA_DIR": str(folder)})
    await sim.friend_request("alice", "A1")
    await sim.friend_request("bob", "A1")
    sim.app.book.tag("alice", ["vip"], sim.clock.now(), source="test")  # any source anchors
    said = [await sim.advance(2 * 3600)]
    assert followup_days(sim, said, "alice") == [("friends/fu_value", 0)]
    assert (await sim.say("admin", "成交 alice")).keys == ["friends/cmd_purchase"]
    assert (await sim.say("admin", "成交 bob")).keys == ["friends/cmd_purchase"]
    said.append(await sim.advance(3 * 86400))
    # alice: vip_care exits (purchased), after_sale's step is skipped (she is vip).
    assert followup_days(sim, said, "alice") == [("friends/fu_value", 0)]
    assert followup_days(sim, said, "bob") == [("friends/fu_welcome", 1)]
    assert sim.app.book.get("bob").stage == "customer"  # type: ignore[union-attr]
    await sim.close()


# -- paced adding ---------------------------------------------------------------------------------
def write_csv(path: Path, rows: list[str], header: str = "微信id,昵称,同意来源,标签") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


ADD_ENV = {
    "FRIENDS_ADD_GAP_MIN": "1-2",
    "JOB_FRIENDS_TICK_CRON": "*/10 * * * *",
    "OUTBOX_CAP_ADD_FRIEND": "100",
}


async def test_paced_adding_from_a_csv_respects_the_daily_cap_and_skips(tmp_path: Path) -> None:
    sim = await make(tmp_path, ADD_ENV)
    for i in range(10):
        await sim.say(f"p{i:03d}", "你好")  # already friends
    for i in (10, 11):
        sim.app.outbox.opt_out(f"p{i:03d}", source="test")
    rows = [f"p{i:03d},客户{i},门店登记表2026-11,vip" for i in range(98)]
    rows += ["p098,客户98,,vip", "has space,x,门店登记表,"]  # no consent; a bad id
    csv = write_csv(tmp_path / "people.csv", rows)
    said = await sim.say("admin", f"批量加好友 {csv}")
    assert said.keys == ["friends/cmd_adds_queued"]
    assert "第 100 行" in said.texts[0] and "第 101 行" in said.texts[0]
    added: list[tuple[str, datetime]] = []
    for _ in range(8):
        day = await sim.advance(86400)
        added += [(s.to, s.at) for s in day if s.kind == "add_friend"]
    per_day = Counter(at.date() for _, at in added)
    assert max(per_day.values()) == 15  # the cap binds: never more in one day
    assert len(added) == 86
    ids = {who for who, _ in added}
    assert len(ids) == 86  # nobody twice
    assert not ids & {f"p{i:03d}" for i in range(12)}  # friends and opted-out skipped
    assert all("09:30" <= f"{at:%H:%M}" < "20:30" for _, at in added)
    gaps = sorted(b - a for (_, a), (_, b) in itertools.pairwise(added))
    assert gaps[0] >= timedelta(minutes=1)
    status = await sim.say("admin", "加好友进度")
    assert status.keys == ["friends/cmd_adds_status"]
    await sim.close()


async def test_adding_stops_on_the_first_throttle_signal(tmp_path: Path) -> None:
    sim = await make(tmp_path, ADD_ENV)
    csv = write_csv(tmp_path / "p.csv", [f"q{i},,门店," for i in range(5)])
    await sim.say("admin", f"批量加好友 {csv}")
    sim.transport.failures = [TransportError("操作过于频繁", throttled=True)]
    said = await sim.advance(3 * 3600)
    assert [s.kind for s in said if s.kind == "add_friend"] == []
    assert "friends/adds_paused" in said.keys
    said = await sim.advance(86400)
    assert [s for s in said if s.kind == "add_friend"] == []  # stays stopped
    resumed = await sim.say("admin", "继续加好友")
    assert resumed.keys == ["friends/cmd_adds_changed"]
    said = await sim.advance(86400)
    added = [s.to for s in [*resumed, *said] if s.kind == "add_friend"]
    assert sorted(added) == ["q0", "q1", "q2", "q3", "q4"]  # the refused one, then the rest
    await sim.close()


async def test_accepted_requests_become_friends_with_their_consent(tmp_path: Path) -> None:
    sim = await make(tmp_path, ADD_ENV)
    csv = write_csv(tmp_path / "p.csv", ["newbie,小新,展会扫码,vip"])
    await sim.say("admin", f"批量加好友 {csv}")
    await sim.advance(86400)
    await sim.say("newbie", "你好，通过了")
    await sim.advance(3600)
    customer = sim.app.book.get("newbie")
    assert customer is not None and "vip" in customer.tags
    assert customer.consent["add_friend"]["source"] == "展会扫码"
    assert [e["contact_id"] for e in events(sim, "friends.add_accepted")] == ["newbie"]
    await sim.close()


async def test_room_members_who_are_not_friends_can_be_queued(sim: ChatSim) -> None:
    await sim.say(Contact("m1", name="甲", is_friend=False), "大家好", room="r9@chatroom")
    await sim.say(Contact("m2", name="乙"), "大家好", room="r9@chatroom")
    await sim.join("r9@chatroom", "m3")
    said = await sim.say("admin", "群成员加好友 r9@chatroom 群内自愿登记")
    assert said.keys == ["friends/cmd_adds_queued"]
    a = friends_ctx(sim).state.tables.adds
    with sim.app.store.sql.engine.connect() as conn:
        queued = dict(conn.execute(sa.select(a.c.contact_id, a.c.consent)).all())
    assert queued == {"m1": "群内自愿登记"}  # m2 and m3 are friends (the transport says so)


# -- churn ----------------------------------------------------------------------------------------
async def test_a_send_to_someone_who_deleted_us_marks_them_churned(sim: ChatSim) -> None:
    await sim.friend_request("alice", "A1")
    sim.transport.failures = [TransportError("对方不是你的好友", gone=True)]
    ctx = friends_ctx(sim)
    await ctx.send("alice", "friends/welcome", name="", channel="", channel_name="")
    assert not (await sim.advance(600)).sent  # failed, not retried
    assert (await sim.advance(600)).keys == []
    customer = sim.app.book.get("alice")
    assert customer is not None and customer.stage == "churned" and not customer.is_friend
    assert [e["data"] for e in events(sim, "friends.churned")] == [{"reason": "deleted_us"}]
    assert "churned" in sim.app.book.facts("alice")


def friends_ctx(sim: ChatSim) -> Ctx:
    ctx: Ctx = sim.app.context("friends")
    return ctx


# -- data rights ----------------------------------------------------------------------------------
WHO = "wxid_zhang3feng"
NAME = "张三丰测试"


def files_mentioning(folder: Path, needles: list[str]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        for needle in needles:
            forms = {needle.encode(), json.dumps(needle).strip('"').encode()}
            if any(form in raw for form in forms):
                found.append(f"{path.relative_to(folder)}: {needle}")
    return found


async def test_export_has_everything_and_erase_leaves_nothing(tmp_path: Path) -> None:
    folder = persona_with(tmp_path, {"friends/followups.toml": SOP})
    sim = await ChatSim.create(
        tmp_path / "data",
        plugins=["friends", "greeter"],
        env={**QUIET, **SOP_ENV, "BOT_PERSONA_DIR": str(folder)},
    )
    person = Contact(WHO, name=NAME)
    await sim.friend_request(person, "A1")
    await sim.friend_request(Contact("bob", name="Bob"), "A1")
    await sim.advance(3600)  # the day-0 follow-up goes out as a bulk row
    await sim.say(person, "你好，想买乌龙")  # greeter memory + keyword tag + events
    await sim.say(person, "大家好", room="r1@chatroom", mention=True)
    await sim.advance(3600)  # room membership written
    await sim.say("admin", f"备注 {WHO} 喜欢乌龙，住静安")
    await sim.say(person, "退订")
    sim.app.store.namespace("demo").table("cards").insert({"owner": WHO, "name": NAME})
    sim.app.store.namespace("demo").table("cards").insert(
        {"owner": "bob", "note": f"friend of {WHO}"}
    )
    extra = sa.Table(
        "demo_points",
        sim.app.store.sql.metadata,
        sa.Column("cid", sa.String(64)),
        sa.Column("points", sa.Integer),
    )
    sim.app.store.sql.metadata.create_all(sim.app.store.sql.engine, tables=[extra])
    with sim.app.store.sql.engine.begin() as conn:
        conn.execute(sa.insert(extra), [{"cid": WHO, "points": 5}, {"cid": "bob", "points": 1}])

    data = rights.export_contact(sim.app, WHO, by="admin", origin="test")
    assert data["customer"]["name"] == NAME and data["customer"]["channel"] == "A1"
    assert {t["tag"] for t in data["tags"]} >= {"channel:A1", "interest:oolong"}
    assert data["consent"]["contact"]["how"] == "friend_request"
    assert data["opt_out"]["source"] == "keyword"
    assert [d["key"] for d in data["deliveries"]] == ["friends/fu_welcome"]
    assert {e["kind"] for e in data["events"]} >= {"in.message", "friends.accepted"}
    plugin = data["plugin_data"]
    assert any(r["key"] == f"greetings:{WHO}" for r in plugin["kv"])
    assert [d["doc"]["owner"] for d in plugin["docs"]] == [WHO, "bob"]
    assert set(plugin["tables"]) == {"friends_followups", "friends_members", "demo_points"}
    path = rights.write_export(sim.app, data, Path("exports"))
    assert WHO in path.read_text(encoding="utf-8") and WHO not in path.name
    assert (path.stat().st_mode & 0o777) == 0o600

    erased = rights.erase_contact(sim.app, WHO, by="admin", origin="test")
    assert erased.found and erased.counts["customer"] == 1 and not erased.left
    sim.app.store.sql.flush()
    assert files_mentioning(tmp_path / "data", [WHO, NAME]) == []
    # Bob is untouched, and the note about Bob keeps everything but the erased id.
    assert sim.app.book.get("bob") is not None
    docs = sim.app.store.namespace("demo").table("cards").all()
    assert [d["owner"] for d in docs] == ["bob"] and "erased-" in docs[0]["note"]
    with sim.app.store.sql.engine.connect() as conn:
        assert conn.execute(sa.select(extra.c.cid)).scalars().all() == ["bob"]
    audits = events(sim, "rights.export") + events(sim, "rights.erase")
    assert [a["contact_id"] for a in audits] == ["", ""]
    assert all(WHO not in json.dumps(a["data"]) for a in audits)
    assert rights.is_empty(rights.export_contact(sim.app, WHO))

    # They come back: a new friend, and their earlier opt-out still holds.
    await sim.friend_request(person, "A1")
    assert sim.app.ledger.is_opted_out(WHO)
    await sim.close()


async def test_erasing_someone_with_actions_still_queued_leaves_no_new_trace(
    sim: ChatSim,
) -> None:
    sim.transport.connected = False  # the accept waits in the outbox
    assert kinds(await sim.friend_request(Contact(WHO, name=NAME), "A1")) == []
    erased = rights.erase_contact(sim.app, WHO, by="admin", origin="test")
    assert erased.counts["queued_actions"] == 1
    sim.transport.connected = True
    assert kinds(await sim.advance(600)) == []
    await sim.close()
    assert files_mentioning(sim.data_dir, [WHO, NAME]) == []


async def test_retention_purges_message_derived_data_of_silent_contacts(tmp_path: Path) -> None:
    sim = await make(tmp_path, {"FRIENDS_RETENTION_DAYS": "30", "JOB_FRIENDS_TICK_CRON": "off"})
    await sim.friend_request("alice", "A1")
    await sim.say("alice", "铁观音多少钱")
    await sim.say("bob", "铁观音多少钱")
    await sim.advance(20 * 86400)
    await sim.say("bob", "还在吗")  # bob keeps talking
    await sim.advance(12 * 86400)
    assert sim.app.book.tags("alice") == {"channel:A1", "store"}  # channel stays
    assert "interest:oolong" in sim.app.book.tags("bob")
    assert sim.app.store.sql.events(kind="in.message", contact_id="alice") == []
    assert sim.app.store.sql.events(kind="in.message", contact_id="bob")
    [purge] = events(sim, "rights.retention_purge")
    assert purge["data"]["contacts"] == 1  # type: ignore[index]
    await sim.close()


# -- bad input ------------------------------------------------------------------------------------
async def test_a_broken_sequence_file_stops_start_up_naming_file_and_line(tmp_path: Path) -> None:
    bad = SOP.replace('after = "1d"', 'after = "1d"\ncondition = "vip and"')
    folder = persona_with(tmp_path, {"friends/followups.toml": bad})
    with pytest.raises(StartupError, match=r"followups\.toml 第 \d+ 行：condition：.*第 8 个字符"):
        await make(tmp_path, {"BOT_PERSONA_DIR": str(folder)})
    folder = persona_with(tmp_path, {"friends/followups.toml": SOP.replace("fu_offer", "fu_nope")})
    with pytest.raises(StartupError) as got:
        await make(tmp_path, {"BOT_PERSONA_DIR": str(folder)})
    assert str(got.value) == (
        "「friends」插件没能启动：persona/friends/followups.toml 第 16 行："
        "文案键「friends/fu_nope」没有对应的文件 persona/friends/fu_nope.j2（改好这个文件后再启动）"
    )
    assert not re.search(r"failed|start again|there is no", str(got.value))
    # Copy of another plugin (it exists) is not follow-up copy: the key names its folder.
    folder = persona_with(
        tmp_path, {"friends/followups.toml": SOP.replace("friends/fu_offer", "greeter/hello")}
    )
    with pytest.raises(StartupError) as got:
        await make(tmp_path, {"BOT_PERSONA_DIR": str(folder)})
    assert str(got.value) == (
        "「friends」插件没能启动：persona/friends/followups.toml 第 16 行："
        "文案键「greeter/hello」不对：跟进文案放在 persona/friends/ 下，键要以 friends/ 开头"
        "（改好这个文件后再启动）"
    )


async def test_two_bots_in_one_process_each_send_their_own_follow_up_copy(
    tmp_path: Path,
) -> None:
    """Follow-up keys come from each bot's own followups.toml: one bot reading its file
    again does not take another bot's keys away (a fleet worker, the tests: one process)."""
    one_step = '[sop]\nanchor = "friend_added"\n\n[[sop.steps]]\nafter = "0d"\nkey = "{}"\n'
    bots = []
    for name, key in (("a", "friends/fu_welcome"), ("b", "friends/fu_value")):
        folder = persona_with(tmp_path / name, {"friends/followups.toml": one_step.format(key)})
        bots.append(await make(tmp_path / name, {**SOP_ENV, "BOT_PERSONA_DIR": str(folder)}))
    first, second = bots
    edited = "# edited\n" + one_step.format("friends/fu_welcome")
    (tmp_path / "a" / "persona" / "friends" / "followups.toml").write_text(edited, encoding="utf-8")
    await first.friend_request("alice", "A1")
    await second.friend_request("bob", "A1")
    assert followup_days(first, [await first.advance(3600)], "alice") == [("friends/fu_welcome", 0)]
    assert followup_days(second, [await second.advance(3600)], "bob") == [("friends/fu_value", 0)]
    for bot in bots:
        await bot.close()


async def test_a_broken_edit_keeps_the_last_good_version_and_tells_the_admins(
    tmp_path: Path,
) -> None:
    folder = persona_with(tmp_path, {})
    sim = await make(tmp_path, {"BOT_PERSONA_DIR": str(folder)})
    (folder / "friends" / "tags.toml").write_text('[[rules]]\nwords = ["x"\n', encoding="utf-8")
    channels = (folder / "friends" / "channels.toml").read_text(encoding="utf-8")
    (folder / "friends" / "channels.toml").write_text(channels + '\n[B7]\nname = "b"\n')
    said = await sim.advance(600)
    assert said.keys == ["friends/data_alert"]
    assert "tags.toml" in said.texts[0] and "第 2 行" in said.texts[0]
    await sim.say("alice", "我喜欢乌龙")
    assert "interest:oolong" in sim.app.book.tags("alice")  # the old rules still serve
    assert kinds(await sim.friend_request("bob", "B7"))[0][0] == "accept_friend"  # new channel
    assert (await sim.advance(600)).keys == []  # told once, not every tick
    await sim.close()


def test_data_file_errors_say_file_line_and_what_is_expected(tmp_path: Path) -> None:
    from plugins._friends.data import DataError, parse_channels, parse_followups, parse_tags

    with pytest.raises(DataError, match=r"c\.toml 第 3 行：\[A1\] 里不认识「tag」这一项") as got:
        parse_channels("c.toml", '[A1]\nname = "x"\ntag = ["y"]\n')
    assert got.value.english.startswith("c.toml:3: unknown key 'tag'")
    with pytest.raises(DataError, match=r"t\.toml 第 4 行：scope「dm」不对，可选：private") as got:
        parse_tags("t.toml", '[[rules]]\nwords = ["a"]\ntags = ["b"]\nscope = "dm"\n')
    assert got.value.english.startswith("t.toml:4: scope must be one of")
    with pytest.raises(DataError, match=r"f\.toml 第 1 行：第 3 列附近写法不对") as got:
        parse_followups("f.toml", "[x\n", lambda key: None)
    assert got.value.english.startswith("f.toml:1: not valid TOML")
    with pytest.raises(DataError, match=r"f\.toml 第 8 行：步骤要按时间先后排列") as got:
        parse_followups(
            "f.toml",
            '[s]\nanchor = "friend_added"\n[[s.steps]]\nafter = "2d"\nkey = "k"\n'
            '[[s.steps]]\nkey = "k"\nafter = "1d"\n',
            lambda key: None,
        )
    assert got.value.english.startswith("f.toml:8: steps must be in time order")
    with pytest.raises(DataError, match=r"f\.toml 第 2 行：anchor 不对，可选") as got:
        parse_followups("f.toml", '[s]\nanchor = "bought"\n', lambda key: None)
    assert got.value.english.startswith("f.toml:2: anchor must be")
    with pytest.raises(DataError, match=r"f\.toml 第 4 行：after：时长「2x」不对") as got:
        parse_followups(
            "f.toml", '[s]\nanchor = "friend_added"\n[[s.steps]]\nafter = "2x"\n', lambda k: None
        )
    assert "bad duration '2x'" in got.value.english


# -- CSV ------------------------------------------------------------------------------------------
async def test_book_csv_import_reports_bad_rows_and_round_trips(tmp_path: Path) -> None:
    sim = await make(tmp_path)
    csv = tmp_path / "book.csv"
    csv.write_bytes(
        "微信id,昵称,渠道,阶段,标签,同意来源,已退订\n"
        "c1,甲,A1,customer,vip；interest:tea,门店登记,\n"
        ",没有id,,,,,\n"
        "c2,乙,,buyer,,,\n"
        "c3,丙,,,,,是\n"
        'c4,"丁, 先生",,,bad tag(x),,\n'.encode("gb18030")
    )
    said = await sim.say("admin", f"导入客户 {csv}")
    assert said.keys == ["friends/cmd_imported"]
    for line in ("第 3 行", "第 4 行", "第 6 行"):
        assert line in said.texts[0]
    c1 = sim.app.book.get("c1")
    assert c1 is not None and c1.stage == "customer" and c1.name == "甲"
    assert c1.tags == {"vip", "interest:tea", "channel:A1"}
    assert c1.consent["contact"]["source"] == "门店登记"
    assert sim.app.book.get("c2") is None and sim.app.ledger.is_opted_out("c3")
    said = await sim.say("admin", "导出客户表")
    assert said.keys == ["friends/cmd_book_exported"]
    [exported] = (tmp_path / "data" / "exports").glob("book-*.csv")
    text = exported.read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("id,name,alias,channel,stage,tags")
    assert "c1,甲,,A1,customer,channel:A1;interest:tea;vip" in text
    await sim.close()


def test_contacts_cli_exports_erases_and_imports(tmp_path: Path) -> None:
    import asyncio

    async def seed() -> None:
        sim = await make(tmp_path)
        await sim.friend_request(Contact(WHO, name=NAME), "A1")
        await sim.close()

    asyncio.run(seed())
    env = {**os.environ, "POND_NO_VENV": "1"}
    data_dir = ["--data-dir", str(tmp_path / "data")]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "contacts.py"), *args, *data_dir],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )

    out = tmp_path / "me.json"
    result = cli("export", WHO, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"已导出：{out}（") and "个标签" in result.stdout
    assert json.loads(out.read_text(encoding="utf-8"))["customer"]["name"] == NAME
    nobody = cli("export", "nobody")
    assert nobody.returncode == 2 and "没有找到 nobody 的任何数据" in nobody.stderr
    refused = cli("delete", WHO)
    assert refused.returncode == 1  # refuses without --yes
    assert "无法恢复。确认请加 --yes" in refused.stderr
    result = cli("delete", WHO, "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("已删除：1 客户资料、")
    for shown in (result, refused, nobody):  # no English halves left in what the tool says
        assert not re.search(
            r"[A-Za-z]{4,}", re.sub(rf"--yes|\S*/\S*|{WHO}|nobody", "", shown.stdout + shown.stderr)
        )
    out.unlink()
    assert files_mentioning(tmp_path / "data", [WHO, NAME]) == []
    book = write_csv(
        tmp_path / "b.csv", ["x1,甲,门店,vip", "x 2,乙,门店,"], "id,name,consent_source,tags"
    )
    result = cli("import", str(book))
    assert result.returncode == 1 and "b.csv 第 3 行：未导入：" in result.stdout
    assert "共 2 行，导入 1 行（新客户 1 位），出错 1 行" in result.stdout


async def test_admin_tags_exports_and_erases_a_contact_from_chat(sim: ChatSim) -> None:
    await sim.say("alice", "你好")
    said = await sim.say("admin", "打标签 alice vip 老客")
    assert said.keys == ["friends/cmd_tags_changed"]
    assert sim.app.book.tags("alice") >= {"vip", "老客"}
    assert (await sim.say("admin", "去标签 alice 老客")).keys == ["friends/cmd_tags_changed"]
    assert "老客" not in sim.app.book.tags("alice")
    assert (await sim.say("admin", "导出客户 alice")).keys == ["friends/cmd_contact_exported"]
    assert (await sim.say("admin", "删除客户 alice")).keys == ["friends/cmd_erase_confirm"]
    assert sim.app.book.get("alice") is not None  # not yet: the id must be given twice
    assert (await sim.say("admin", "删除客户 alice alice")).keys == ["friends/cmd_erased"]
    assert sim.app.book.get("alice") is None
    assert (await sim.say("admin", "打标签 nobody vip")).keys == ["friends/cmd_unknown_contact"]


async def test_the_terminal_tool_lists_friend_requests_and_exports_without_a_bot(
    tmp_path: Path,
) -> None:
    """scripts/admin.py with no bot running works on the data itself: the friends plugin's
    state is opened there too, so its review items and commands answer in the terminal."""
    import io

    from harness import load_script

    cli: Any = load_script("admin", "admin_cli_friends")
    sim = await ChatSim.create(tmp_path / "data", plugins=["friends", "admin"], env=QUIET)
    await sim.friend_request(Contact("erin", name="Erin"), "你好呀")
    env = {**sim.env, "BOT_PLUGINS": "friends"}
    sim.env = env
    await sim.close()

    async def tool(*words: str) -> tuple[int, str]:
        out = io.StringIO()
        code = await cli.run([*words], settings=sim.settings(), clock=sim.clock, out=out)
        return code, out.getvalue()

    code, printed = await tool("reviews")
    assert code == 0 and "好友申请待通过" in printed and "erin" in printed
    code, printed = await tool("export", "erin")
    assert code == 0 and "已导出" in printed, printed
