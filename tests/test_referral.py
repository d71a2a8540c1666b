"""裂变 (referral) as customers and operators meet it: alice asks for her invite code and
poster, her friends come with the code or are pulled into the group, the stay rule, self-
invites, loops and bursts for review, rewards once per threshold (also across a restart),
voiding, leaderboards, and the poster checked as an image."""

from __future__ import annotations

import csv
import io
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import zxingcpp
from harness import ROOT, START, ChatSim, Transcript
from PIL import Image, ImageFont

import plugins as plugin_modules
import plugins.referral as referral
from plugins._analytics import demo
from plugins._analytics.build import build_report, open_store
from plugins._analytics.data import Source
from plugins._analytics.render import write_report
from plugins._referral import codes, poster
from pond import (
    Contact,
    Context,
    MemberJoined,
    MemberLeft,
    Room,
    Settings,
    StartupError,
    rights,
)
from pond.store import Store

QUIET = {"OUTBOX_QUIET_HOURS": "off", "FRIENDS_GREET_DELAY_S": "10"}
PLUGINS = ["friends", "admin", "referral"]
DAY = 24 * 3600
NO_CJK_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


async def make(tmp_path: Path, env: Mapping[str, str] | None = None) -> ChatSim:
    return await ChatSim.create(tmp_path / "data", plugins=PLUGINS, env={**QUIET, **(env or {})})


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await make(tmp_path)
    yield chat
    await chat.close()


def kinds(said: Transcript) -> list[tuple[str, str, str]]:
    return [(s.kind, s.to, s.key) for s in said]


def st(sim: ChatSim) -> referral.ReferralState:
    state: referral.ReferralState = sim.app.context("referral").state
    return state


async def code_of(sim: ChatSim, who: str) -> str:
    said = await sim.say(Contact(who, name=who), "邀请码")
    assert said.keys[0] == "referral/your_code"
    code = st(sim).db.code_of(who)
    assert code is not None and code in said.texts[0]
    return code


async def join(sim: ChatSim, room: str, inviter: str, *members: str) -> Transcript:
    event = MemberJoined(
        Room(room),
        tuple(Contact(m, name=m) for m in members),
        sim.clock.now(),
        inviter=Contact(inviter, name=inviter),
        id=sim.next_id(),
    )
    return await sim.send_event(event)


async def leave(sim: ChatSim, room: str, *members: str) -> Transcript:
    event = MemberLeft(
        Room(room), tuple(Contact(m) for m in members), sim.clock.now(), id=sim.next_id()
    )
    return await sim.send_event(event)


async def a_day_later(sim: ChatSim) -> Transcript:
    """The stay (24 h in the shipped rules) is over; the 5-minute tick settles invites."""
    sim.clock.advance(DAY + 60)
    return await sim.tick("referral.tick")


def status(sim: ChatSim, invitee: str) -> tuple[str, str]:
    inv = st(sim).db.invite_of(invitee)
    assert inv is not None
    return inv.status, inv.reason


def ctx(sim: ChatSim) -> Context:
    return Context(sim.app, sim.app.plugins["referral"])


def poster_path(sim: ChatSim) -> Path:
    media = sim.transport.performed[-1].action.media
    assert media is not None and media.kind.value == "image"
    return Path(media.path)


# -- codes and posters ----------------------------------------------------------------------------
async def test_alice_asks_for_her_code_and_gets_it_as_text_and_on_her_poster(
    sim: ChatSim,
) -> None:
    said = await sim.say(Contact("alice", name="小美"), "邀请码")
    assert kinds(said) == [
        ("send", "alice", "referral/your_code"),
        ("send", "alice", "referral/poster"),
    ]
    code = st(sim).db.code_of("alice")
    assert code is not None and code in said.texts[0]
    assert len(code) == 6 and set(code) <= set(codes.ALPHABET)
    image = Image.open(poster_path(sim))
    assert image.size == poster.SIZE
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [code]
    # The same code every time she asks; 我要邀请 works too.
    again = await sim.say(Contact("alice", name="小美"), "我要邀请")
    assert again.keys == ["referral/your_code", "referral/poster"]
    assert st(sim).db.code_of("alice") == code and code in again.texts[0]


async def test_the_poster_draws_its_chinese_lines_with_a_cjk_font(tmp_path: Path) -> None:
    font = poster.find_font("")
    lines = ["小美邀请你来小鱼塘", "加好友时填写下面的邀请码"]
    assert poster.covers(ImageFont.truetype(font, 34), "".join(lines))
    out = poster.render(
        tmp_path / "p.png",
        code="K7QM2P",
        lines=lines,
        qr_payload="https://x.cn/?c=K7QM2P",
        font_path=font,
    )
    image = Image.open(out).convert("RGB")
    assert image.size == (750, 1334)
    # The title is white text on the brand band: there is ink where the title goes.
    band = image.crop((0, 100, 750, 200))
    assert (255, 255, 255) in {c for _, c in band.getcolors(100000) or []}
    [found] = zxingcpp.read_barcodes(image)
    assert found.text == "https://x.cn/?c=K7QM2P"
    # A font without Chinese glyphs (it would print boxes) is refused, never used.
    with pytest.raises(poster.FontMissing):
        poster.find_font(NO_CJK_FONT)
    with pytest.raises(poster.FontMissing):
        poster.render(
            tmp_path / "q.png",
            code="K7QM2P",
            lines=lines,
            qr_payload="K7QM2P",
            font_path=NO_CJK_FONT,
        )


async def test_without_a_cjk_font_the_code_goes_out_as_text_and_admins_are_told(
    tmp_path: Path,
) -> None:
    sim = await make(tmp_path, {"REFERRAL_FONT": NO_CJK_FONT})
    said = await sim.drain()  # told at start, not when the first customer asks
    assert kinds(said) == [("send", "admin", "referral/font_alert")]
    assert "中文字体" in said.texts[0] and "REFERRAL_FONT" in said.texts[0]
    said = await sim.say(Contact("alice", name="小美"), "邀请码")
    assert kinds(said) == [("send", "alice", "referral/your_code")]
    code = st(sim).db.code_of("alice")
    assert code is not None and code in said.texts[0]
    # Told once, not on every request.
    assert (await sim.say("bob", "邀请码")).keys == ["referral/your_code"]
    await sim.close()


async def test_codes_are_unique_random_and_found_inside_a_hello(sim: ChatSim) -> None:
    drawn = {codes.new_code(6) for _ in range(2000)}
    assert len(drawn) > 1990  # no sequence: 25^6 codes, drawn with secrets
    alice, bob = await code_of(sim, "alice"), await code_of(sim, "bob")
    assert alice != bob
    assert codes.find(f"我是小美的朋友，邀请码{alice.lower()}", 6) == [alice]
    assert codes.find(f"X{alice}", 6) == []  # part of a longer token: not a code


# -- attribution ----------------------------------------------------------------------------------
async def test_bobs_request_with_alices_code_is_accepted_tagged_and_attributed(
    sim: ChatSim,
) -> None:
    code = await code_of(sim, "alice")
    said = await sim.friend_request(Contact("bob", name="小王"), f"小美推荐的 {code.lower()}")
    assert kinds(said) == [
        ("accept_friend", "bob", ""),
        ("send", "bob", "referral/welcome"),
    ]
    assert "alice" in said.texts[0]  # the welcome names who invited them (her name here)
    bob = sim.app.book.get("bob")
    assert bob is not None and bob.is_friend and bob.channel == "referral"
    assert "referral" in bob.tags
    assert bob.consent["contact"]["source"] == "referral:alice"
    assert status(sim, "bob") == ("pending", "")
    inv = st(sim).db.invite_of("bob")
    assert inv is not None and (inv.inviter_id, inv.path) == ("alice", "friend_request")
    await a_day_later(sim)
    assert status(sim, "bob") == ("valid", "")
    # A request without a code is still the friends plugin's business.
    assert kinds(await sim.friend_request("zed", "你好")) == [
        ("send", "admin", "friends/review_alert")
    ]


async def test_a_blocked_person_stays_blocked_even_with_a_code(sim: ChatSim) -> None:
    code = await code_of(sim, "alice")
    await sim.friend_request("pest", "hello")
    assert (await sim.say("admin", "拉黑 1")).keys == ["friends/cmd_blocked"]
    assert kinds(await sim.friend_request("pest", f"alice 推荐的 {code}")) == []
    assert st(sim).db.invite_of("pest") is None
    # A blocked word is the operator's rule too, code or not.
    assert kinds(await sim.friend_request("spam", f"兼职刷单日赚500 {code}")) == []


async def test_carol_joins_the_group_invited_by_alice_and_counts_after_the_stay(
    sim: ChatSim,
) -> None:
    await join(sim, "r1", "alice", "carol")
    inv = st(sim).db.invite_of("carol")
    assert inv is not None and (inv.inviter_id, inv.path, inv.room_id) == (
        "alice",
        "room_join",
        "r1",
    )
    assert st(sim).db.valid_count("alice") == 0  # not before the stay is over
    await a_day_later(sim)
    assert status(sim, "carol") == ("valid", "")
    assert st(sim).db.valid_count("alice") == 1


async def test_dave_leaves_after_an_hour_and_does_not_count(sim: ChatSim) -> None:
    await join(sim, "r1", "alice", "dave")
    sim.clock.advance(3600)
    await leave(sim, "r1", "dave")
    assert status(sim, "dave") == ("invalid", "left")
    await a_day_later(sim)
    assert st(sim).db.valid_count("alice") == 0


async def test_an_existing_customer_is_not_new_and_does_not_count(sim: ChatSim) -> None:
    await sim.say("erin", "你好")  # in the book already
    sim.app.book.upsert("erin", sim.clock.now(), name="erin")
    await join(sim, "r1", "alice", "erin")
    assert status(sim, "erin") == ("invalid", "not_new")


async def test_operators_own_invites_into_a_room_are_not_referrals(sim: ChatSim) -> None:
    await join(sim, "r1", "admin", "frank")
    assert st(sim).db.invite_of("frank") is None


# -- fraud checks for review ----------------------------------------------------------------------
async def test_a_self_invite_and_a_loop_are_flagged_for_the_operators(sim: ChatSim) -> None:
    said = await join(sim, "r1", "alice", "alice")
    assert kinds(said) == [("send", "admin", "referral/review_alert")]
    assert status(sim, "alice") == ("invalid", "self")
    await join(sim, "r1", "bob", "gina")
    said = await join(sim, "r2", "gina", "bob")  # gina brought by bob, now "brings" bob
    assert status(sim, "bob") == ("invalid", "loop")
    assert "互相邀请" in said.texts[0]
    items = await referral.reviews(ctx(sim))
    assert [(i.kind, i.detail) for i in items] == [
        ("referral_self", "alice"),
        ("referral_loop", "bob"),
    ]
    todo = await sim.say("admin", "待办")
    assert "自己邀请自己（裂变待核实）" in todo.texts[0]
    assert "互相邀请（裂变待核实）" in todo.texts[0]
    said = await sim.say("admin", "核实邀请 alice")
    assert said.keys == ["referral/cmd_cleared"]
    assert len(await referral.reviews(ctx(sim))) == 1  # type: ignore[attr-defined]


async def test_twenty_joins_in_five_minutes_are_held_for_review(sim: ChatSim) -> None:
    alerts = Transcript()
    for n in range(20):
        said = await join(sim, "r1", "mallory", f"p{n:02d}")
        alerts.sent.extend(said.sent)
        sim.clock.advance(15)  # 20 joins in 5 minutes
    assert alerts.keys == ["referral/review_alert"]  # one alert, when the line was crossed
    assert "5 分钟内带来了 10 人" in alerts.texts[0]
    held = [status(sim, f"p{n:02d}") for n in range(20)]
    assert held == [("held", "")] * 20
    items = await referral.reviews(ctx(sim))
    assert [(i.kind, i.contact_id, i.detail) for i in items] == [
        ("referral_burst", "mallory", "20")
    ]
    assert "短时间大量邀请（裂变待核实）" in (await sim.say("admin", "待办")).texts[0]
    await a_day_later(sim)
    assert st(sim).db.valid_count("mallory") == 0  # held invites never count by themselves
    said = await sim.say("admin", "核实邀请 mallory")
    cleared = next(s.text for s in said.sent if s.key == "referral/cmd_cleared")
    assert "20 条恢复计数" in cleared
    assert st(sim).db.valid_count("mallory") == 20  # their stay was over: valid at once
    # Both reward thresholds (3 and 10) were crossed together: one message each.
    assert sorted(s.key for s in said.sent if s.to == "mallory") == ["referral/reward"] * 2


# -- rewards --------------------------------------------------------------------------------------
async def test_three_valid_invites_reward_alice_once_even_across_a_restart(sim: ChatSim) -> None:
    code = await code_of(sim, "alice")
    await sim.friend_request(Contact("bob", name="小王"), code)
    await join(sim, "r1", "alice", "carol", "erin")
    said = await a_day_later(sim)
    assert sorted(kinds(said)) == [
        ("send", "admin", "referral/reward_alert"),
        ("send", "alice", "referral/reward"),
    ]
    reward = next(s for s in said.sent if s.key == "referral/reward")
    assert reward.cls == "service" and "3 位" in reward.text and "20元" in reward.text
    assert "邀请达人" in sim.app.book.tags("alice")
    assert "20元无门槛优惠券" in next(s.text for s in said.sent if s.to == "admin")
    await sim.restart()
    assert (await sim.tick("referral.tick")).keys == []
    await join(sim, "r1", "alice", "hank")  # a fourth: still below the next threshold (10)
    assert (await a_day_later(sim)).keys == []
    assert st(sim).db.valid_count("alice") == 4
    assert st(sim).db.rewards_of("alice") == [3]


async def test_an_opted_out_inviter_gets_no_reward_message_but_staff_are_told(
    sim: ChatSim,
) -> None:
    await sim.say("alice", "退订")
    await join(sim, "r1", "alice", "carol", "erin", "gina")
    said = await a_day_later(sim)
    assert kinds(said) == [("send", "admin", "referral/reward_alert")]
    assert "已退订" in said.texts[0]


async def test_a_friend_who_deletes_us_stops_counting(sim: ChatSim) -> None:
    code = await code_of(sim, "alice")
    await sim.friend_request("bob", code)
    await a_day_later(sim)
    assert st(sim).db.valid_count("alice") == 1
    sim.app.book.set_stage("bob", "churned", sim.clock.now(), source="deleted_us")
    assert status(sim, "bob") == ("churned", "deleted")
    assert st(sim).db.valid_count("alice") == 0


# -- operators: void, leaderboards ----------------------------------------------------------------
async def test_an_operator_voids_an_invite_with_a_reason_and_it_is_audited(sim: ChatSim) -> None:
    await join(sim, "r1", "alice", "carol", "erin")
    await a_day_later(sim)
    assert (await sim.say("admin", "作废邀请 carol")).keys == ["referral/cmd_usage"]
    said = await sim.say("admin", "作废邀请 carol 同一个人的小号")
    assert said.keys == ["referral/cmd_voided"] and "同一个人的小号" in said.texts[0]
    inv = st(sim).db.invite_of("carol")
    assert inv is not None
    assert (inv.status, inv.void_by, inv.void_reason) == ("void", "admin", "同一个人的小号")
    assert st(sim).db.valid_count("alice") == 1
    [event] = sim.app.store.sql.events(kind="referral.voided")
    assert event["data"] == {"inviter": "alice", "by": "admin", "was": "valid"}
    assert (await sim.say("admin", "作废邀请 nobody 理由")).keys == ["referral/cmd_unknown"]


async def test_customers_see_their_own_rank_and_operators_the_top_n(sim: ChatSim) -> None:
    await join(sim, "r1", "alice", "c1", "c2", "c3")
    await join(sim, "r1", "bob", "c4")
    await join(sim, "r1", "gina", "c5", "c6")
    await a_day_later(sim)
    said = await sim.say("gina", "我的邀请")
    assert said.keys == ["referral/my_rank"]
    assert "2 位" in said.texts[0] and "第 2 名" in said.texts[0]
    assert "alice" not in said.texts[0] and "bob" not in said.texts[0]
    said = await sim.say("admin", "邀请榜 2")
    assert said.keys == ["referral/cmd_top"]
    text = said.texts[0]
    assert "1. alice" in text and "2. gina" in text and "bob" not in text
    assert (await sim.say("admin", "邀请榜 十")).keys == ["referral/cmd_usage"]
    assert (await sim.say("admin", "邀请榜 ²")).keys == ["referral/cmd_usage"]  # a digit, no number


# -- rules file -----------------------------------------------------------------------------------
def persona_with_rules(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "persona"
    if not folder.exists():
        shutil.copytree(ROOT / "persona", folder)
    (folder / "referral" / "rules.toml").write_text(text, encoding="utf-8")
    return folder


async def test_a_bad_rules_file_is_refused_in_chinese_and_the_last_good_rules_serve(
    tmp_path: Path,
) -> None:
    good = (ROOT / "persona" / "referral" / "rules.toml").read_text(encoding="utf-8")
    folder = persona_with_rules(tmp_path, good.replace("stay_hours = 24", "stay_hours = 2"))
    sim = await make(tmp_path, {"BOT_PERSONA_DIR": str(folder)})
    assert st(sim).rules.stay_hours == 2
    persona_with_rules(tmp_path, good.replace("stay_hours = 24", 'stay_hours = "一天"'))
    said = await sim.tick("referral.tick")
    assert said.keys == ["referral/data_alert"]
    assert "rules.toml" in said.texts[0] and "stay_hours 的值「一天」" in said.texts[0]
    assert "不小于 0 的数" in said.texts[0]
    assert st(sim).rules.stay_hours == 2  # the last good rules keep serving
    await sim.close()
    persona_with_rules(tmp_path, good + "\n[[reward]]\nthreshold = 3\n")
    with pytest.raises((StartupError, RuntimeError)) as error:
        await make(tmp_path, {"BOT_PERSONA_DIR": str(folder)})
    assert "写了两次" in str(error.value)


# -- the 裂变 section of the report -------------------------------------------------------------
TZ = ZoneInfo("Asia/Shanghai")
END = date(2026, 11, 22)
FIRST = END - timedelta(days=29)


def report_settings(folder: Path) -> Settings:
    return Settings.from_mapping(
        {"BOT_DATA_DIR": str(folder), "BOT_PERSONA_DIR": str(ROOT / "persona")}
    )


def test_the_report_referral_section_matches_an_independent_count_of_the_demo(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    with Store(folder) as store:
        demo.generate(store, end=END, tz=TZ, days=30, contacts=900, seed=3)
        events = store.sql.events()
    sql = open_store(report_settings(folder))
    try:
        report = build_report(
            report_settings(folder),
            Source(sql),
            since=FIRST.isoformat(),
            until=END.isoformat(),
            now=datetime.combine(END + timedelta(days=1), time(9), TZ),
        )
    finally:
        sql.close()

    # Counted here from the raw events: the first attribution of each invitee in the
    # range, its state = the last settle or void, valid share and K-factor.
    def local_day(e: dict[str, object]) -> date:
        ts = e["ts"]
        assert isinstance(ts, datetime)
        return ts.astimezone(TZ).date()

    ordered = sorted(events, key=lambda e: e["ts"])  # type: ignore[arg-type, return-value]
    invited: dict[str, tuple[date, str]] = {}
    state: dict[str, str] = {}
    paths: Counter[str] = Counter()
    for e in ordered:
        data = e["data"]
        assert isinstance(data, dict)
        if not FIRST <= local_day(e) <= END:
            continue
        cid = str(e["contact_id"])
        if e["kind"] == "referral.invited" and cid not in invited:
            invited[cid] = (local_day(e), str(data["inviter"]))
            paths[str(data["path"])] += 1
            state[cid] = "pending"
        elif e["kind"] == "referral.settled":
            state[cid] = str(data["status"])
        elif e["kind"] == "referral.voided":
            state[cid] = "void"
    per_day = Counter(day.isoformat() for day, _ in invited.values())
    valid_per_day = Counter(
        day.isoformat() for cid, (day, _) in invited.items() if state[cid] == "valid"
    )
    inviters = {inviter for _, inviter in invited.values()}
    valid = sum(valid_per_day.values())
    assert len(invited) > 50 and 0 < valid < len(invited)  # the demo has referrals, all kinds
    assert set(state.values()) == {"valid", "invalid", "void", "pending"}

    rows = report.tables["referrals"].rows
    assert sum(r["room_join"] for r in rows) == paths["room_join"] > 10
    assert sum(r["friend_request"] for r in rows) == paths["friend_request"] > 10
    assert sum(r["pending"] for r in rows) == sum(1 for s in state.values() if s == "pending")
    assert {r["day"]: r["invites"] for r in rows} == dict(per_day)
    assert {r["day"]: r["valid"] for r in rows if r["valid"]} == dict(valid_per_day)
    [summary] = report.tables["referrals_summary"].rows
    assert summary["invites"] == len(invited) and summary["valid"] == valid
    assert summary["valid_share"] == pytest.approx(valid / len(invited))
    assert summary["inviters"] == len(inviters)
    assert summary["k_factor"] == pytest.approx(valid / len(inviters))
    # Referred friends are new friends too, under the referral channel.
    new = {r["channel"]: 0 for r in report.tables["new_friends"].rows}
    for r in report.tables["new_friends"].rows:
        new[r["channel"]] += r["n"]
    referred = sum(
        1 for e in ordered if e["kind"] == "referral.accepted" and FIRST <= local_day(e) <= END
    )
    assert new["referral"] == referred
    assert {
        r["channel_name"] for r in report.tables["new_friends"].rows if r["channel"] == "referral"
    } == {"老带新（邀请码）"}

    # Top inviters: ids and nicknames in the CSV only, never on the page.
    engine = sa.create_engine(f"sqlite:///{folder / 'pond.sqlite3'}")
    with engine.connect() as conn:
        names = dict(conn.execute(sa.text("SELECT id, name FROM customers")).all())
    engine.dispose()
    best = Counter(inviter for cid, (_, inviter) in invited.items() if state[cid] == "valid")
    top = report.tables["referral_top"].rows
    assert top[0]["valid"] == max(best.values())
    assert {r["inviter_id"]: r["valid"] for r in top if r["valid"]} == dict(best)
    assert all(r["nickname"] == names[r["inviter_id"]] for r in top)
    written = write_report(report, tmp_path / "report")
    page = written.html.read_text(encoding="utf-8")
    assert "裂变" in page and f"K 因子 {valid / len(inviters):.2f}" in page
    assert top[0]["inviter_id"] not in page and top[0]["nickname"] not in page
    with (tmp_path / "report" / "csv" / "referral_top.csv").open(encoding="utf-8-sig") as f:
        lines = list(csv.reader(f))
    assert lines[0][:3] == ["名次", "邀请人 id", "昵称"]
    assert lines[1][1:3] == [top[0]["inviter_id"], top[0]["nickname"]]


async def test_the_demo_writes_referral_events_in_the_shapes_the_plugin_writes(
    sim: ChatSim, tmp_path: Path
) -> None:
    code = await code_of(sim, "alice")
    await sim.friend_request("bob", code)
    await a_day_later(sim)
    await sim.say("admin", "作废邀请 bob 测试")
    live: dict[str, set[str]] = {}
    for e in sim.app.store.sql.events():
        live.setdefault(str(e["kind"]), set()).update(e["data"])  # type: ignore[arg-type]
    with Store(tmp_path / "demo") as store:
        demo.generate(store, end=END, tz=TZ, days=10, contacts=300, seed=1)
        made: dict[str, set[str]] = {}
        for e in store.sql.events():
            made.setdefault(str(e["kind"]), set()).update(e["data"])  # type: ignore[arg-type]
    for kind in (
        "referral.request",
        "referral.accepted",
        "referral.invited",
        "referral.settled",
        "referral.voided",
    ):
        assert kind in live and kind in made, kind
        assert made[kind] == live[kind], (kind, made[kind] ^ live[kind])


# -- more of the operators' and customers' side ----------------------------------------------------
async def test_a_purchase_hands_the_customer_a_code_and_poster_once(sim: ChatSim) -> None:
    await sim.friend_request(Contact("ivy", name="小艾"), "我是小鱼塘的老客户")
    await sim.drain()
    said = await sim.say("admin", "成交 ivy")
    assert "referral/code_issued" not in said.keys  # the next tick hands it out
    said = await sim.tick("referral.tick")
    assert said.keys == ["referral/code_issued"]
    code = st(sim).db.code_of("ivy")
    assert code is not None and code in said.texts[0]
    assert [r.text for r in zxingcpp.read_barcodes(Image.open(poster_path(sim)))] == [code]
    await sim.say("admin", "成交 ivy")  # a second purchase: she has her code already
    assert (await sim.tick("referral.tick")).keys == []


async def test_an_operator_reads_who_brought_whom(sim: ChatSim) -> None:
    code = await code_of(sim, "alice")
    await sim.friend_request(Contact("bob", name="小王"), code)
    await join(sim, "r1", "bob", "carol")
    await a_day_later(sim)
    await sim.say("admin", "作废邀请 carol 同一个人")
    said = await sim.say("admin", "邀请记录 bob")
    assert said.keys == ["referral/cmd_tree"]
    text = said.texts[0]
    assert "alice" in text and "邀请码加好友" in text and "有效" in text
    assert "carol" in text and "拉进群" in text and "已作废" in text and "同一个人" in text
    assert (await sim.say("admin", "邀请记录 nobody")).keys == ["referral/cmd_unknown"]


async def test_with_every_default_plugin_the_referral_words_and_codes_still_work(
    tmp_path: Path,
) -> None:
    sim = await ChatSim.create(
        tmp_path / "data",
        plugins=["greeter", "auto_reply", "friends", "groups", "admin", "analytics", "referral"],
        env=QUIET,
    )
    code = await code_of(sim, "alice")
    said = await sim.friend_request(Contact("bob", name="小王"), f"邀请码 {code}")
    assert kinds(said)[:2] == [("accept_friend", "bob", ""), ("send", "bob", "referral/welcome")]
    assert "friends/welcome" not in said.keys  # one greeting, not two
    await join(sim, "r1", "alice", "carol")
    assert status(sim, "carol") == ("pending", "")
    assert (await sim.say("alice", "我的邀请")).keys == ["referral/my_rank"]
    await sim.close()


async def test_a_request_over_the_daily_accept_cap_waits_for_the_next_day(tmp_path: Path) -> None:
    sim = await make(tmp_path, {"OUTBOX_CAP_ACCEPT_FRIEND": "1"})
    code = await code_of(sim, "alice")
    assert kinds(await sim.friend_request("bob", code))[0] == ("accept_friend", "bob", "")
    said = await sim.friend_request(Contact("carol", name="小卡"), code)
    # Over today's cap: nothing goes to carol (the admins hear of the cap), nothing is lost.
    assert kinds(said) == [("send", "admin", "core/cap_alert")]
    assert st(sim).db.invite_of("carol") is None
    assert (await sim.tick("referral.tick")).keys == []  # not again today
    sim.clock.advance(DAY)  # 10:00 the next day, inside the accept hours
    said = await sim.tick("referral.tick")  # handed to the governor...
    assert kinds(said) == [("accept_friend", "carol", "")]
    sim.clock.advance(300)
    said = await sim.tick("referral.tick")  # ...and finished at the next tick
    assert kinds(said) == [("send", "carol", "referral/welcome")]
    assert status(sim, "carol") == ("pending", "")
    assert sim.app.book.get("carol").is_friend  # type: ignore[union-attr]
    sim.clock.advance(300)
    assert (await sim.tick("referral.tick")).keys == []
    await sim.close()


async def test_the_bots_own_invites_into_a_room_are_not_referrals(sim: ChatSim) -> None:
    await join(sim, "r1", sim.transport.self_id, "kim")
    assert st(sim).db.invite_of("kim") is None


async def test_erasing_a_customer_deletes_their_code_invites_and_poster(sim: ChatSim) -> None:
    code = await code_of(sim, "alice")
    picture = poster_path(sim)
    assert picture.exists() and "alice" in picture.name
    await sim.friend_request("bob", code)
    rights.erase_contact(sim.app, "alice", by="admin")
    assert not picture.exists()
    assert st(sim).db.code_of("alice") is None and st(sim).db.owner_of(code) is None
    assert st(sim).db.by_inviter("alice") == []


async def test_the_console_simulator_can_say_who_pulled_whom_into_a_group(
    tmp_path: Path,
) -> None:
    from pond import App, FakeClock
    from pond.transports.console import ConsoleTransport, Simulator

    settings = Settings.from_mapping(
        {"BOT_DATA_DIR": str(tmp_path), "BOT_PERSONA_DIR": str(ROOT / "persona")}
    )
    clock = FakeClock(START)
    out = io.StringIO()
    app = App(settings, ConsoleTransport(clock.now, out), clock=clock)
    for plugin in plugin_modules.load(["referral"]):
        app.include(plugin)
    await app.start()
    console = Simulator(app, clock)
    await console.play(["/join r1 carol dave by=alice", "/join r1 erin"])
    db = app.context("referral").state.db
    assert [i.invitee_id for i in db.by_inviter("alice")] == ["carol", "dave"]
    assert db.invite_of("erin") is None
    await app.stop()


async def test_a_cleared_burst_stays_cleared_when_more_joins_follow(sim: ChatSim) -> None:
    for n in range(10):
        await join(sim, "r1", "mallory", f"p{n}")
    assert status(sim, "p0") == ("held", "")
    await sim.say("admin", "核实邀请 mallory")
    assert status(sim, "p0") == ("pending", "")
    said = await join(sim, "r1", "mallory", "p10")  # still inside the 5 minutes
    assert status(sim, "p10") == ("held", "") and status(sim, "p0") == ("pending", "")
    assert said.keys == ["referral/review_alert"]  # the new hold is told again
    items = await referral.reviews(ctx(sim))
    assert [(i.kind, i.detail) for i in items] == [("referral_burst", "1")]
