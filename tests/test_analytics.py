"""Operations analytics as operators meet it: the analytics plugin in chat (keywords, order
keywords, the 报表 command), the report on a demo month checked against counts made here
from the raw events, the HTML in headless Chromium, and bad requests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from browser import check_page, requires_chromium
from harness import ROOT, ChatSim

import plugins.analytics as analytics_plugin
from plugins._analytics import demo, keywords
from plugins._analytics.build import ReportError, build_report, open_store
from plugins._analytics.data import NEW_FRIEND_KINDS, Source
from plugins._analytics.metrics import Report
from plugins._analytics.render import write_report
from pond import Settings, StartupError
from pond.store import Store

TZ = ZoneInfo("Asia/Shanghai")
END = date(2026, 11, 22)
FIRST = END - timedelta(days=29)
QUIET = {"OUTBOX_QUIET_HOURS": "off", "FRIENDS_GREET_DELAY_S": "10"}


def segmenter() -> keywords.Segmenter:
    folder = ROOT / "persona" / "analytics"
    return keywords.Segmenter(
        keywords.load_words(folder / "stopwords.txt"), keywords.load_words(folder / "words.txt")
    )


def settings(data_dir: Path) -> Settings:
    return Settings.from_mapping(
        {"BOT_DATA_DIR": str(data_dir), "BOT_PERSONA_DIR": str(ROOT / "persona")}
    )


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    with Store(folder) as store:
        demo.generate(store, end=END, tz=TZ, days=30, contacts=900, seed=3, segmenter=segmenter())
    return folder


def report_of(folder: Path, **kw: object) -> Report:
    sql = open_store(settings(folder))
    request = {"since": FIRST.isoformat(), "until": END.isoformat(), **kw}
    try:
        return build_report(
            settings(folder),
            Source(sql),
            now=datetime.combine(END + timedelta(days=1), time(9), TZ),
            **request,  # type: ignore[arg-type]
        )
    finally:
        sql.close()


def raw_events(folder: Path) -> list[dict[str, object]]:
    with Store(folder) as store:
        return store.sql.events()


def in_range(e: dict[str, object]) -> bool:
    ts = e["ts"]
    assert isinstance(ts, datetime)
    return FIRST <= ts.astimezone(TZ).date() <= END


def day_of(e: dict[str, object]) -> str:
    ts = e["ts"]
    assert isinstance(ts, datetime)
    return ts.astimezone(TZ).date().isoformat()


# -- the report against independent counts -----------------------------------------------------


def test_report_numbers_match_the_events(demo_dir: Path) -> None:
    report = report_of(demo_dir)
    events = [e for e in raw_events(demo_dir) if in_range(e)]
    operator = demo.OPERATOR
    engine = sa.create_engine(f"sqlite:///{demo_dir / 'pond.sqlite3'}")
    with engine.connect() as conn:
        channel = dict(conn.execute(sa.text("SELECT id, channel FROM customers")).all())
        orders = conn.execute(sa.text("SELECT contact_id, at FROM analytics_orders")).all()
        counters = conn.execute(
            sa.text("SELECT day, n FROM out_counters WHERE kind = 'send'")
        ).all()
    engine.dispose()

    # New friends by channel: each contact once, on their first add in the range.
    first: dict[str, dict[str, object]] = {}
    for e in sorted(events, key=lambda e: e["ts"]):  # type: ignore[arg-type, return-value]
        if e["kind"] in NEW_FRIEND_KINDS and e["contact_id"] not in first:
            first[str(e["contact_id"])] = e
    expected = Counter(channel[cid] for cid in first)
    got: Counter[str] = Counter()
    for row in report.tables["new_friends"].rows:
        got[row["channel"]] += row["n"]
    assert got == expected and sum(got.values()) > 100
    assert report.headline["new_friends"] == len(first)

    # Active contacts per day, the operator left out.
    active: dict[str, set[str]] = {}
    for e in events:
        if e["kind"] == "in.message" and e["contact_id"] != operator:
            active.setdefault(day_of(e), set()).add(str(e["contact_id"]))
    assert {r["day"]: r["active"] for r in report.tables["daily_active"].rows if r["active"]} == {
        d: len(s) for d, s in active.items()
    }
    assert report.headline["active_contacts"] == len(set().union(*active.values()))

    # Room messages by room, and the heatmap adds up to them.
    rooms = Counter(str(e["room_id"]) for e in events if e["kind"] == "in.message" and e["room_id"])
    heat = {r["room_id"]: r["total"] for r in report.tables["group_heatmap"].rows}
    assert heat == dict(rooms)
    for r in report.tables["group_heatmap"].rows:
        assert sum(r[f"h{h:02d}"] for h in range(24)) == r["total"]
    for r in report.tables["room_activity"].rows:  # sizes come from the join/leave events
        assert 0 < r["active_ratio"] <= 1, r

    # Opt-outs and churn.
    care = report.tables["optouts_churn"].rows
    assert sum(r["optouts"] for r in care) == sum(
        1
        for e in events
        if e["kind"] == "contact.opt_out" and e["data"]["new"]  # type: ignore[index]
    )
    assert sum(r["churned"] for r in care) == sum(
        1 for e in events if e["kind"] == "friends.churned"
    )

    # Conversions by source.
    conv = report.tables["conversions"].rows
    assert sum(r["purchase"] for r in conv) == sum(
        1 for e in events if e["kind"] == "friends.purchase"
    )
    assert sum(r["keyword"] for r in conv) == sum(
        1 for e in events if e["kind"] == "analytics.order_keyword"
    )
    order_days = [
        (str(cid), datetime.fromisoformat(str(at)).replace(tzinfo=UTC).astimezone(TZ).date())
        for cid, at in orders
    ]
    assert sum(r["orders"] for r in conv) == sum(1 for _, d in order_days if FIRST <= d <= END)

    # Repurchase: converted in the range, and on two or more days up to its end.
    bought: dict[str, set[date]] = {}
    for e in raw_events(demo_dir):
        if e["kind"] in ("friends.purchase", "analytics.order_keyword"):
            bought.setdefault(str(e["contact_id"]), set()).add(date.fromisoformat(day_of(e)))
    for cid, d in order_days:
        bought.setdefault(cid, set()).add(d)
    converted = [cid for cid, days in bought.items() if any(FIRST <= d <= END for d in days)]
    assert report.headline["converted"] == len(converted) > 10
    repeat = sum(1 for cid in converted if len({d for d in bought[cid] if d <= END}) >= 2)
    assert report.headline["repurchase_rate"] == pytest.approx(repeat / len(converted))

    # Outbound sends per day: the governor's own counter.
    sends = {r["day"]: r["n"] for r in report.tables["outbound"].rows if r["kind"] == "send"}
    assert {d: n for d, n in sends.items() if n} == {
        d: n for d, n in counters if FIRST.isoformat() <= d <= END.isoformat()
    }

    # Campaigns: every bulk job of the month but our own add requests.
    kinds = {r["type"] for r in report.tables["campaigns"].rows}
    assert {"群发", "跟进"} <= kinds
    assert all(r["sent"] <= r["recipients"] for r in report.tables["campaigns"].rows)

    assert [w for w, _ in [(r["word"], r["n"]) for r in report.tables["keywords"].rows][:50]]


def test_channel_and_room_filters_narrow_the_numbers(demo_dir: Path) -> None:
    everything = report_of(demo_dir)
    live = report_of(demo_dir, channels=["直播间"])  # by name
    assert {r["channel"] for r in live.tables["new_friends"].rows} == {"LIVE"}
    assert 0 < live.headline["new_friends"] < everything.headline["new_friends"]
    vip = report_of(demo_dir, rooms=["r-vip"])
    assert [r["room_id"] for r in vip.tables["group_heatmap"].rows] == ["r-vip"]
    assert {r["room_id"] for r in vip.tables["room_activity"].rows} == {"r-vip"}
    assert vip.headline["inbound_rooms"] == vip.tables["group_heatmap"].rows[0]["total"]
    assert live.headline["active_contacts"] < everything.headline["active_contacts"]
    assert live.headline["inbound_private"] < everything.headline["inbound_private"]


def test_bad_requests_say_what_is_wrong(demo_dir: Path) -> None:
    with pytest.raises(ReportError, match="2026-13-01"):
        report_of(demo_dir, since="2026-13-01")  # type: ignore[arg-type]
    with pytest.raises(ReportError, match="晚于"):
        sql = open_store(settings(demo_dir))
        try:
            build_report(settings(demo_dir), Source(sql), since="2026-11-20", until="2026-11-01")
        finally:
            sql.close()
    with pytest.raises(ReportError, match=r"不认识的渠道「TIKTOK」.*直播间（LIVE）"):
        report_of(demo_dir, channels=["TIKTOK"])
    with pytest.raises(ReportError, match="不认识的群"):
        report_of(demo_dir, rooms=["no-such-room"])


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POND_NO_VENV": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def test_script_on_a_new_data_dir_says_there_is_no_data(tmp_path: Path) -> None:
    folder = tmp_path / "new"
    result = run_script("--data-dir", str(folder), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "还没有数据" in html
    assert not (folder / "pond.sqlite3").exists()  # reading never creates a database
    bad = run_script("--data-dir", str(folder), "--from", "11-01")
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr


def test_script_on_a_corrupt_database_says_which_file(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "pond.sqlite3").write_bytes(b"not a database, just bytes" * 100)
    result = run_script("--data-dir", str(folder))
    assert result.returncode == 2
    assert "pond.sqlite3" in result.stderr and "Traceback" not in result.stderr
    orders = run_script("--data-dir", str(folder), "--import-orders", str(folder / "x.csv"))
    assert orders.returncode == 2 and "pond.sqlite3" in orders.stderr
    assert (folder / "pond.sqlite3").read_bytes().startswith(b"not a database")  # untouched


def test_orders_import_counts_as_conversions(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    with Store(folder) as store:
        demo.generate(store, end=END, tz=TZ, days=5, contacts=30, seed=2)
    csv_file = tmp_path / "订单.csv"
    csv_file.write_text(
        "订单号,客户,下单时间,实付金额\n"
        "T1,wxid_demo_000001,2026-11-21 10:00,128\n"
        "T2,wxid_demo_000001,2026-11-22 11:00,￥98.50\n"
        "T3,nobody,2026-11-22 11:00,10\n"
        "T4,wxid_demo_000002,yesterday,10\n",
        encoding="utf-8-sig",
    )
    before = report_of(folder)
    result = run_script(
        "--data-dir",
        str(folder),
        "--import-orders",
        str(csv_file),
        "--from",
        FIRST.isoformat(),
        "--to",
        END.isoformat(),
    )
    assert result.returncode == 0, result.stderr
    assert "新增 2 笔" in result.stdout and "有问题 2 行" in result.stdout
    assert "第 4 行" in result.stderr and "第 5 行" in result.stderr
    again = run_script("--data-dir", str(folder), "--import-orders", str(csv_file))
    assert "新增 0 笔，已有 2 笔" in again.stdout  # idempotent by order id
    after = report_of(folder)
    assert after.headline["revenue"] == pytest.approx(before.headline["revenue"] + 226.5)
    days = {r["day"]: r["orders"] for r in after.tables["conversions"].rows}
    was = {r["day"]: r["orders"] for r in before.tables["conversions"].rows}
    assert days["2026-11-21"] == was["2026-11-21"] + 1
    assert days["2026-11-22"] == was["2026-11-22"] + 1


@requires_chromium
def test_report_renders_every_chart_in_a_browser(demo_dir: Path, tmp_path: Path) -> None:
    written = write_report(report_of(demo_dir), tmp_path / "report")
    shot = tmp_path / "report.png"
    page = check_page(written.html, shot)
    assert page.console_errors == [] and page.page_errors == []
    assert page.requests_outside == []  # opens offline: nothing from a CDN
    assert len(page.charts) >= 12
    assert all(c["marks"] > 0 and c["width"] > 0 for c in page.charts), page.charts
    for title in ("新增好友", "渠道转化漏斗", "每周留存", "群活跃时段", "热词", "成交", "退订"):
        assert title in page.text
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csvs = sorted(p.name for p in (tmp_path / "report" / "csv").iterdir())
    assert "funnel.csv" in csvs and "summary.csv" in csvs and len(csvs) == len(written.csv)


# -- the plugin in chat -------------------------------------------------------------------------


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await ChatSim.create(
        tmp_path / "data", plugins=["friends", "groups", "analytics", "admin"], env=QUIET
    )
    st = chat.app.plugins["analytics"]
    assert st is not None
    yield chat
    await chat.close()


def top_words(sim: ChatSim) -> dict[str, int]:
    table = keywords.define_table(sim.app.store.sql.metadata)
    return dict(keywords.top_words(sim.app.store.sql.engine, table, "2000-01-01", "2100-01-01"))


async def test_keywords_are_counted_without_keeping_the_text(sim: ChatSim) -> None:
    await sim.say("alice", "请问桂花乌龙多少钱？")
    await sim.say("bob", "桂花乌龙还有货吗", room="r1")
    await sim.say("admin", "桂花乌龙 明前龙井")  # operators are not customers
    await sim.tick("analytics.flush_keywords")
    words = top_words(sim)
    assert words["桂花乌龙"] == 2 and "明前龙井" not in words
    assert "请问" not in words  # a stop word
    dump = (sim.data_dir / "pond.sqlite3").read_bytes()
    assert "还有货吗".encode() not in dump


async def test_keywords_count_under_the_contacts_channel(sim: ChatSim) -> None:
    await sim.friend_request("fay", "直播间")
    await sim.advance(60)
    await sim.say("fay", "正山小种怎么泡")
    await sim.say("gus", "正山小种好喝")  # no channel: not a friend from a channel
    await sim.friend_request("gus", "静安店")  # a friend from a store, the same minute
    await sim.say("gus", "正山小种还有吗")
    await sim.advance(60)  # the minute job flushes
    table = keywords.define_table(sim.app.store.sql.metadata)
    live = keywords.top_words(
        sim.app.store.sql.engine, table, "2000-01-01", "2100-01-01", channels=["LIVE"]
    )
    assert dict(live) == {"正山小种": 1}
    a1 = keywords.top_words(
        sim.app.store.sql.engine, table, "2000-01-01", "2100-01-01", channels=["A1"]
    )
    assert dict(a1) == {"正山小种": 1}  # his words from before he was a friend stay unattributed


async def test_order_keyword_is_a_conversion_once_a_day(sim: ChatSim) -> None:
    await sim.say("alice", "我已付款了")
    await sim.say("alice", "付款了，麻烦尽快发货")
    await sim.say("bob", "怎么付款？")  # a question is not an order
    await sim.restart()
    await sim.say("alice", "已下单")  # the same day, after a restart: still once
    events = sim.app.store.sql.events(kind="analytics.order_keyword")
    assert [e["contact_id"] for e in events] == ["alice"]


async def test_broken_order_words_stop_start_up_and_a_reload_keeps_the_last_good(
    tmp_path: Path,
) -> None:
    persona = tmp_path / "persona"
    shutil.copytree(ROOT / "persona", persona)
    orders_file = persona / "analytics" / "orders.toml"
    good = orders_file.read_text(encoding="utf-8")
    orders_file.write_text('words = ["已付款"', encoding="utf-8")
    env = {**QUIET, "BOT_PERSONA_DIR": str(persona)}
    with pytest.raises(
        StartupError,
        match=r"orders\.toml：第 1 行（文件末尾）附近写法不对：列表的方括号“]”没有闭合",
    ):
        await ChatSim.create(tmp_path / "a", plugins=["analytics"], env=env)
    orders_file.write_text(good, encoding="utf-8")
    sim = await ChatSim.create(tmp_path / "b", plugins=["analytics", "admin"], env=env)
    try:
        orders_file.write_text("words = 3", encoding="utf-8")
        said = await sim.say("admin", "重新加载")
        assert "orders.toml 的 words 要写成不为空的文字列表" in said.texts[0]
        await sim.say("alice", "已付款")  # the last good words still apply
        assert sim.app.store.sql.events(kind="analytics.order_keyword")
    finally:
        await sim.close()


async def test_report_command_answers_with_numbers_and_the_file(sim: ChatSim) -> None:
    await sim.friend_request("carol", "直播间")
    await sim.advance(60)
    await sim.say("carol", "想买正山小种")
    said = await sim.say("admin", "报表 7")
    assert said.keys == ["analytics/report_ready"]
    sent = said.texts[0]
    assert "新增好友 1 人" in sent and "report.html" in sent
    media = sim.transport.performed[-1].action.media
    assert media is not None and Path(media.path).exists()
    bad = await sim.say("admin", "报表 2026-13-01 2026-11-30")
    assert bad.keys == ["analytics/report_error"] and "YYYY-MM-DD" in bad.texts[0]


async def test_report_command_that_takes_too_long_is_stopped(
    sim: ChatSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(analytics_plugin, "REPORT_TIMEOUT_S", 0.01)
    said = await sim.say("admin", "报表")
    assert said.keys == ["analytics/report_error"] and "scripts/report.py" in said.texts[0]
    assert not list((sim.data_dir / "reports").glob("*/report.html"))


async def test_morning_report_has_yesterdays_growth(sim: ChatSim) -> None:
    await sim.friend_request("dave", "直播间")
    await sim.advance(24 * 3600)
    said = await sim.say("admin", "日报")
    assert "新增好友 1 人（直播间 1）" in said.texts[0]


# -- the demo writes what the bot writes ---------------------------------------------------------


async def test_demo_events_have_the_shapes_of_a_live_session(sim: ChatSim, tmp_path: Path) -> None:
    await sim.friend_request("erin", "直播间")
    await sim.advance(60)
    await sim.say("erin", "桂花乌龙多少钱")
    await sim.say("erin", "退订")
    await sim.join("r1", "erin")
    await sim.say("admin", "成交 erin")
    assert sim.app.store.sql.events(kind="groups.join"), [
        e["kind"] for e in sim.app.store.sql.events()
    ]
    live: dict[str, set[str]] = {}
    for e in sim.app.store.sql.events():
        live.setdefault(str(e["kind"]), set()).update(e["data"])  # type: ignore[arg-type]
    folder = tmp_path / "demo"
    with Store(folder) as store:
        demo.generate(store, end=END, tz=TZ, days=10, contacts=300, seed=1)
        made: dict[str, set[str]] = {}
        for e in store.sql.events():
            made.setdefault(str(e["kind"]), set()).update(e["data"])  # type: ignore[arg-type]
    for kind in (
        "in.message",
        "friends.accepted",
        "contact.opt_out",
        "groups.join",
        "out.sent",
        "friends.purchase",
    ):
        assert kind in live and kind in made, kind
        assert made[kind] <= live[kind], (kind, made[kind] - live[kind])
