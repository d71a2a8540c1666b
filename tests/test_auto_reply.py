"""Auto-reply (个人号自动回复), as customers, staff and copywriters meet it.

Each test runs on a private copy of the persona folder (brand, core, greeter, auto_reply), so
a test may edit rules.toml or catalog.toml the way a copywriter would. The LLM tests talk to
a tiny HTTP server on 127.0.0.1 started by the test: that is the network boundary."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from harness import ROOT, ChatSim

from plugins._auto_reply.hours import Hours, parse_window
from plugins._auto_reply.match import normalize
from pond import HumanTakeover, MediaKind, MessageType, StartupError
from pond.persona import lint

NIGHT = datetime(2026, 11, 23, 22, 30)  # a Monday, after closing (09:00-21:00)
COPIED = ("core", "greeter", "auto_reply")


def persona_copy(tmp_path: Path) -> Path:
    """The persona folder with only the plugins these tests load (others' work in progress
    cannot break these tests)."""
    src, dst = ROOT / "persona", tmp_path / "persona"
    dst.mkdir()
    shared = [p.name for p in src.glob("_*.j2")]  # _voice.j2, _format.j2 ...: used everywhere
    for name in ("persona.toml", "_commands.toml", *shared):
        shutil.copy(src / name, dst / name)
    for name in COPIED:
        shutil.copytree(src / name, dst / name)
    for layer in (src / "_layers").iterdir():
        for plugin_dir in layer.iterdir():
            if plugin_dir.name in COPIED:
                shutil.copytree(plugin_dir, dst / "_layers" / layer.name / plugin_dir.name)
    return dst


async def make(
    tmp_path: Path, *, start: datetime = datetime(2026, 11, 23, 10, 0), **env: str
) -> ChatSim:
    persona = tmp_path / "persona"
    if not persona.exists():
        persona_copy(tmp_path)
    return await ChatSim.create(
        tmp_path / "data",
        plugins=["auto_reply"],
        env={"BOT_PERSONA_DIR": str(persona), **env},
        start=start,
    )


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await make(tmp_path)
    yield chat
    await chat.close()


def events(sim: ChatSim, kind: str) -> list[dict[str, Any]]:
    return [
        dict(e["data"], **{k: e[k] for k in ("chat_id", "contact_id")})
        for e in sim.app.store.sql.events(kind=kind)
    ]  # type: ignore[arg-type]


def edit(path: Path, text: str) -> None:
    """Save like an editor does; bump the mtime so a same-second save is still seen."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


# -- rules -------------------------------------------------------------------------------------


async def test_keyword_rule_answers_with_its_persona_key_and_records_the_rule(
    sim: ChatSim,
) -> None:
    said = await sim.say("alice", "你们的茶多少钱呀")
    assert said.keys == ["auto_reply/price"]
    assert said.sent[0].to == "alice" and said.sent[0].cls == "reply"
    assert "¥68" in said.texts[0]  # prices come from catalog.toml
    [reply] = events(sim, "auto_reply.reply")
    assert reply["source"] == "rule" and reply["rule"] == "price"
    assert reply["key"] == "auto_reply/price" and reply["contact_id"] == "alice"
    assert "asked:price" in sim.app.book.tags("alice")


async def test_matching_ignores_full_width_letters_case_mentions_and_spaces(
    sim: ChatSim,
) -> None:
    assert normalize("@阿鱼\u2005 ＰＲＩＣＥ   價格？") == "price 價格?"
    assert (await sim.say("bob", "ＷＨＥＲＥ   地址？")).keys == ["auto_reply/address"]


async def test_regex_rule(sim: ChatSim) -> None:
    said = await sim.say("alice", "请问你们明天几点开门")
    assert said.keys == ["auto_reply/hours"]
    assert events(sim, "auto_reply.reply")[0]["rule"] == "opening_hours"


async def test_rooms_need_a_mention_and_the_answer_mentions_the_asker(sim: ChatSim) -> None:
    assert (await sim.say("bob", "价格", room="r1")).keys == []
    said = await sim.say("bob", "@阿鱼 价格", room="r1", mention=True)
    assert said.keys == ["auto_reply/price"]
    assert said.sent[0].to == "r1" and said.sent[0].mentions == ("bob",)
    # Chatter that matches nothing gets nothing, mentioned or not, but a mention is
    # acknowledged once.
    assert (await sim.say("carol", "哈哈哈", room="r1")).keys == []
    assert (await sim.say("carol", "@阿鱼 在吗", room="r1", mention=True)).keys == ["core/fallback"]


async def test_room_always_rules_only_in_listed_rooms(tmp_path: Path) -> None:
    persona_copy(tmp_path)
    rules = tmp_path / "persona" / "auto_reply" / "rules.toml"
    edit(
        rules,
        rules.read_text(encoding="utf-8")
        + '\n[[rule]]\nid = "tea_room_menu"\nexact = ["菜单"]\nscope = ["room"]\n'
        'rooms = ["tea_room"]\nreply = "auto_reply/price"\n',
    )
    sim = await make(tmp_path)
    try:
        assert (await sim.say("bob", "菜单", room="tea_room")).keys == ["auto_reply/price"]
        assert (await sim.say("bob", "菜单", room="other_room")).keys == []
        assert (await sim.say("bob", "菜单")).keys == ["core/fallback"]  # not a private rule
    finally:
        await sim.close()


async def test_cooldown_per_contact_and_rule(sim: ChatSim) -> None:
    assert (await sim.say("alice", "价格")).keys == ["auto_reply/price"]
    assert (await sim.say("alice", "价格呢")).keys == []  # price cooldown: 300 s
    assert (await sim.say("bob", "价格")).keys == ["auto_reply/price"]  # per contact
    assert (await sim.say("alice", "运费多少")).keys == ["auto_reply/shipping"]  # per rule
    [quiet] = events(sim, "auto_reply.suppressed")
    assert quiet["reason"] == "cooldown" and quiet["rule"] == "price"
    await sim.advance(301)
    assert (await sim.say("alice", "价格")).keys == ["auto_reply/price"]


async def test_variants_do_not_repeat_in_a_row(sim: ChatSim) -> None:
    texts = []
    for _ in range(4):
        texts.append((await sim.say("alice", "价格")).texts[0])
        await sim.advance(301)
    assert all(a != b for a, b in itertools.pairwise(texts))


# -- product guide -----------------------------------------------------------------------------


async def test_product_question_gets_its_card_and_tags_the_asker(sim: ChatSim) -> None:
    said = await sim.say("alice", "桂花乌龙多少钱？")  # the guide outranks the price list
    assert said.keys == ["auto_reply/product_card"]
    assert "桂花乌龙" in said.texts[0] and "¥68" in said.texts[0]
    media = sim.transport.performed[-1].action.media
    assert media is not None and media.kind is MediaKind.LINK
    assert media.url == "https://shop.example.com/p/osmanthus-oolong"
    assert "interest:oolong" in sim.app.book.tags("alice")
    [reply] = events(sim, "auto_reply.reply")
    assert reply["source"] == "product" and reply["rule"] == "product:osmanthus_oolong"
    # The same card is not sent again within the guide's cooldown.
    assert (await sim.say("alice", "桂花乌龙")).keys == []


async def test_longest_name_wins_and_two_products_get_two_cards(sim: ChatSim) -> None:
    said = await sim.say("alice", "西湖龙井和小种哪个好")
    assert said.keys == ["auto_reply/product_card", "auto_reply/product_card"]
    assert "明前龙井" in said.texts[0] and "正山小种" in said.texts[1]
    assert {"interest:green_tea", "interest:black_tea"} <= sim.app.book.tags("alice")


async def test_a_higher_priority_rule_beats_the_guide(sim: ChatSim) -> None:
    # "龙井" names a product, but the address rule (priority 60) is tried first.
    assert (await sim.say("alice", "龙井路的门店怎么走")).keys == ["auto_reply/address"]


async def test_product_image_then_link_card(tmp_path: Path) -> None:
    persona_copy(tmp_path)
    folder = tmp_path / "persona" / "auto_reply"
    (folder / "images").mkdir()
    (folder / "images" / "oolong.jpg").write_bytes(b"\xff\xd8\xff\xe0 fake jpeg")
    catalog = folder / "catalog.toml"
    edit(
        catalog,
        catalog.read_text(encoding="utf-8").replace(
            '# image = "images/osmanthus_oolong.jpg"', 'image = "images/oolong.jpg"'
        ),
    )
    sim = await make(tmp_path)
    try:
        said = await sim.say("alice", "桂花茶")
        assert said.keys == ["auto_reply/product_card", "auto_reply/product_card"]
        card, link = (p.action for p in sim.transport.performed[-2:])
        assert card.text and card.media is not None and card.media.kind is MediaKind.IMAGE
        assert card.media.path == str((folder / "images" / "oolong.jpg").resolve())
        assert not link.text and link.media is not None and link.media.kind is MediaKind.LINK
    finally:
        await sim.close()


# -- fallback, loop guard, known bots ----------------------------------------------------------


async def test_fallback_once_per_window_in_private(sim: ChatSim) -> None:
    assert (await sim.say("alice", "今天天气真好")).keys == ["core/fallback"]
    assert (await sim.say("alice", "你觉得呢")).keys == []
    assert (await sim.say("alice", "[图片]", type=MessageType.IMAGE)).keys == []
    assert events(sim, "auto_reply.suppressed")[0]["reason"] == "fallback_window"
    await sim.advance(3601)
    assert (await sim.say("alice", "在不在")).keys == ["core/fallback"]
    assert events(sim, "auto_reply.reply")[-1]["source"] == "fallback"


async def test_other_plugins_answer_first(tmp_path: Path) -> None:
    persona_copy(tmp_path)
    sim = await ChatSim.create(
        tmp_path / "data",
        plugins=["greeter", "auto_reply"],
        env={"BOT_PERSONA_DIR": str(tmp_path / "persona")},
    )
    try:
        assert (await sim.say("alice", "你好")).keys == ["greeter/hello"]
        assert (await sim.say("alice", "价格")).keys == ["auto_reply/price"]
    finally:
        await sim.close()


async def test_known_bots_and_our_own_account_are_never_answered(tmp_path: Path) -> None:
    sim = await make(tmp_path, BOT_KNOWN_BOT_IDS="otherbot")
    try:
        assert (await sim.say("otherbot", "价格")).keys == []
        assert (await sim.say("bot", "价格")).keys == []  # the account itself
    finally:
        await sim.close()


async def test_loop_guard_stops_an_identical_exchange_and_tells_admins(tmp_path: Path) -> None:
    # Another bot, not in BOT_KNOWN_BOT_IDS, answers each of our replies with the same text.
    sim = await make(tmp_path, AUTO_REPLY_FALLBACK_WINDOW_MIN="0")
    try:
        for _ in range(2):
            assert (await sim.say("robot", "您好，我现在有事不在")).keys == ["core/fallback"]
            await sim.advance(30)
        said = await sim.say("robot", "您好，我现在有事不在")
        assert said.keys == ["auto_reply/loop_alert"] and said.sent[0].to == "admin"
        assert sim.app.pauses.reason("robot") == "loop_guard"
        assert (await sim.say("robot", "您好，我现在有事不在")).keys == []
        [guard] = events(sim, "auto_reply.loop_guard")
        assert guard["reason"] == "repeat" and guard["chat_id"] == "robot"
    finally:
        await sim.close()


async def test_several_members_asking_the_same_in_a_group_all_get_answers(sim: ChatSim) -> None:
    # A busy group is not a bot: three people asking the address within 3 minutes.
    for who in ("amy", "ben", "cat", "amy2", "ben2"):
        said = await sim.say(who, "@阿鱼 地址", room="r1", mention=True)
        assert said.keys == ["auto_reply/address"] and said.sent[0].mentions == (who,)
        await sim.advance(40)
    assert events(sim, "auto_reply.loop_guard") == []
    assert sim.app.pauses.reason("r1") is None


async def test_a_bot_like_member_is_muted_alone_and_the_group_goes_on(tmp_path: Path) -> None:
    sim = await make(tmp_path, AUTO_REPLY_FALLBACK_WINDOW_MIN="0")
    try:
        for n in (1, 2):  # near-identical: only a counter changes
            said = await sim.say(
                "autobot", f"@阿鱼 自动回复：您好，我现在不在（{n}）", room="r1", mention=True
            )
            assert said.keys == ["core/fallback"]
        said = await sim.say(
            "autobot", "@阿鱼 自动回复：您好，我现在不在（3）", room="r1", mention=True
        )
        assert said.keys == ["auto_reply/loop_alert"] and said.sent[0].to == "admin"
        assert (
            "r1" in said.texts[0] and "autobot" in said.texts[0] and "这一位成员" in said.texts[0]
        )
        assert (await sim.say("autobot", "@阿鱼 地址", room="r1", mention=True)).keys == []
        assert sim.app.pauses.reason("r1") is None
        assert (await sim.say("amy", "@阿鱼 地址", room="r1", mention=True)).keys == [
            "auto_reply/address"
        ]
        await sim.advance(3601)
        assert (await sim.say("autobot", "@阿鱼 价格", room="r1", mention=True)).keys == [
            "auto_reply/price"
        ]
    finally:
        await sim.close()


async def test_a_chat_sending_our_own_reply_back_is_paused(tmp_path: Path) -> None:
    sim = await make(tmp_path, AUTO_REPLY_FALLBACK_WINDOW_MIN="0")
    try:
        [ours] = (await sim.say("robot", "在吗")).texts
        said = await sim.say("robot", ours)
        assert said.keys == ["auto_reply/loop_alert"]
        assert sim.app.pauses.reason("robot") == "loop_guard"
        [guard] = events(sim, "auto_reply.loop_guard")
        assert guard["reason"] == "echo"
    finally:
        await sim.close()


# -- promises kept: joining a group, how to buy, product questions, calls to action ------------


async def test_wanting_to_join_without_an_invite_room_tells_staff(sim: ChatSim) -> None:
    said = await sim.say("alice", "我想进群")
    assert said.keys == ["auto_reply/join_group", "auto_reply/staff_request"]
    customer, staff = said.sent
    assert customer.to == "alice" and staff.to == "admin" and "alice" in staff.text
    assert "我想进群" in staff.text
    assert (await sim.say("bob", "我不想进群")).keys == ["core/fallback"]


async def test_nobody_to_add_them_means_no_promise(tmp_path: Path) -> None:
    sim = await make(tmp_path, AUTO_REPLY_NOTIFY_ADMINS="false")
    try:
        assert (await sim.say("alice", "我想进群")).keys == ["core/fallback"]
    finally:
        await sim.close()


async def test_wanting_to_join_reaches_the_groups_invite(tmp_path: Path) -> None:
    persona = persona_copy(tmp_path)
    shutil.copytree(ROOT / "persona" / "groups", persona / "groups")
    sim = await ChatSim.create(
        tmp_path / "data", plugins=["auto_reply", "groups"], env={"BOT_PERSONA_DIR": str(persona)}
    )
    try:
        said = await sim.say("alice", "我想进群")
        assert said.keys == ["groups/invite_sent"]
        assert [(s.kind, s.to) for s in said if s.kind == "invite"] == [("invite", "r1")]
    finally:
        await sim.close()


async def test_how_to_buy_gets_the_links_in_private_and_in_a_group(sim: ChatSim) -> None:
    said = await sim.say("alice", "怎么买")
    assert said.keys == ["auto_reply/how_to_buy"]
    assert "https://shop.example.com/p/longjing" in said.texts[0]
    in_room = await sim.say("bob", "@阿鱼 怎么买", room="r1", mention=True)
    assert in_room.keys == ["auto_reply/how_to_buy"] and in_room.sent[0].mentions == ("bob",)
    assert "有点忙" not in in_room.texts[0]
    assert (await sim.say("carol", "我想买龙井")).keys == ["auto_reply/product_card"]


async def test_product_questions_by_synonym_or_for_a_tea_not_sold(sim: ChatSim) -> None:
    said = await sim.say("alice", "有没有普洱")
    assert said.keys == ["auto_reply/product_none"]
    assert "普洱" in said.texts[0] and "明前龙井" in said.texts[0]
    assert (await sim.say("bob", "有绿茶吗")).keys == ["auto_reply/product_card"]
    assert "明前龙井" in (await sim.say("carol", "有绿茶吗")).texts[0]
    assert (await sim.say("dave", "普洱和龙井哪个好")).keys == ["auto_reply/product_card"]


async def test_a_synonym_must_name_known_products(tmp_path: Path) -> None:
    persona = persona_copy(tmp_path)
    catalog = persona / "auto_reply" / "catalog.toml"
    edit(
        catalog,
        catalog.read_text(encoding="utf-8").replace('"绿茶" = ["longjing"]', '"绿茶" = ["pu_er"]'),
    )
    with pytest.raises(StartupError, match=r"\[synonyms\] 的 绿茶：没有 id 是「pu_er」的在售商品"):
        await make(tmp_path)


CTA = """
[reply]
keywords = ["新茶"]
answer = "broadcasts/reply_new_tea"
days = 7
notify = true
"""


async def test_a_broadcast_call_to_action_is_answered_for_its_recipients(tmp_path: Path) -> None:
    persona = persona_copy(tmp_path)
    shutil.copytree(ROOT / "persona" / "broadcasts", persona / "broadcasts")
    campaigns = tmp_path / "c"
    campaigns.mkdir()
    (campaigns / "tea.toml").write_text(
        'title = "秋季新茶"\ncopy = "broadcasts/copy_new_tea"\nsegment = "vip"\nstart = "now"\n'
        + CTA
        + '[vars]\nproduct = "桂花乌龙"\nprice = 68\n',
        encoding="utf-8",
    )
    sim = await ChatSim.create(
        tmp_path / "data",
        plugins=["auto_reply", "broadcasts"],
        env={
            "BOT_PERSONA_DIR": str(persona),
            "BROADCASTS_CAMPAIGNS_DIR": str(campaigns),
            # Daily checks keep the week this test waits quick to simulate.
            "JOB_BROADCASTS_TICK_CRON": "0 3 * * *",
            "JOB_AUTO_REPLY_SWEEP_CRON": "0 3 * * *",
        },
    )
    try:
        now = sim.clock.now()
        sim.app.book.upsert("alice", now, name="alice")
        sim.app.book.tag("alice", ["vip"], now)
        await sim.say("admin", "群发创建 tea")
        await sim.say("admin", "群发预览 tea")
        started = await sim.say("admin", "群发开始 tea 1")
        copy = [s for s in [*started, *(await sim.drain())] if s.to == "alice"]
        assert copy and "回复“新茶”" in copy[0].text

        said = await sim.say("alice", "新茶帮我留一份")
        assert said.keys == ["broadcasts/reply_new_tea", "auto_reply/staff_request"]
        assert said.sent[0].to == "alice" and said.sent[1].to == "admin"
        assert "新茶" in said.sent[1].text and "秋季新茶" in said.sent[1].text
        assert events(sim, "auto_reply.reply")[-1]["source"] == "cta"
        # The operator's preview takes the same road: the word answers its recipients.
        tried = await sim.say("admin", "试回复 新茶帮我留一份")
        assert "秋季新茶" in tried.texts[0] and "broadcasts/reply_new_tea" in tried.texts[0]
        # Someone who did not get the broadcast asks about new tea: the product guide.
        assert (await sim.say("bob", "新茶")).keys[0] == "auto_reply/product_card"
        # A week later the word is an ordinary message again.
        await sim.advance(8 * 86400)
        assert (await sim.say("alice", "新茶")).keys[0] == "auto_reply/product_card"
    finally:
        await sim.close()


async def test_a_calendar_post_call_to_action_is_answered_in_its_rooms(tmp_path: Path) -> None:
    persona = persona_copy(tmp_path)
    shutil.copytree(ROOT / "persona" / "calendar", persona / "calendar")
    calendar = persona / "calendar" / "calendar.toml"
    calendar.write_text(
        '[[post]]\nid = "daily"\nkey = "calendar/weekly_life"\ncron = "0 11 * * *"\n'
        'rooms = ["r1@chatroom"]\n'
        'reply = { keywords = ["报名"], answer = "auto_reply/hours", days = 3 }\n',
        encoding="utf-8",
    )
    sim = await ChatSim.create(
        tmp_path / "data",
        plugins=["auto_reply", "calendar"],
        env={
            "BOT_PERSONA_DIR": str(persona),
            "CALENDAR_FILE": str(calendar),
            "CALENDAR_FALLBACK": "broadcast",
            "JOB_AUTO_REPLY_SWEEP_CRON": "30 3 * * *",  # not in the same minute as the post
        },
    )
    try:
        before = await sim.say("amy", "@阿鱼 报名", room="r1@chatroom", mention=True)
        assert before.keys == ["core/fallback"]  # nothing was posted yet
        posted = await sim.advance(3600 + 60)
        assert ("r1@chatroom", "calendar/weekly_life") in [(s.to, s.key) for s in posted]
        said = await sim.say("ben", "@阿鱼 报名", room="r1@chatroom", mention=True)
        assert said.keys == ["auto_reply/hours"] and said.sent[0].mentions == ("ben",)
        other = await sim.say("cat", "@阿鱼 报名", room="r2@chatroom", mention=True)
        assert other.keys == ["core/fallback"]  # that room did not get the post
    finally:
        await sim.close()


async def test_copy_asking_for_a_reply_no_rule_answers_is_flagged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    persona = persona_copy(tmp_path)
    shutil.copytree(ROOT / "persona" / "broadcasts", persona / "broadcasts")
    copy = persona / "broadcasts" / "copy_new_tea.j2"
    edit(
        copy, copy.read_text(encoding="utf-8").replace("帮你留一份", "帮你留一份，回复“试饮”约品鉴")
    )
    caplog.set_level("WARNING", logger="pond.persona")
    sim = await make(tmp_path)
    try:
        [call] = lint.app_unanswered(sim.app)
        assert (call.file, call.line, call.word) == ("broadcasts/copy_new_tea.j2", 6, "试饮")
        assert "broadcasts/copy_new_tea.j2:6" in caplog.text and "试饮" in caplog.text
        await sim.drain()
        assert sim.transport.performed == []  # a log line for the copywriter, no admin alert
    finally:
        await sim.close()
    # The copywriter's tools say the same, in Chinese, with file and line.
    for script in ("persona_lint.py", "persona_preview.py"):
        shown = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / script), "--persona", str(persona)],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "POND_NO_VENV": "1", "BOT_PLUGINS": "auto_reply"},
        )  # fmt: skip
        assert "broadcasts/copy_new_tea.j2:6 请客户回复“试饮”" in shown.stdout, shown.stderr
    # A rule that answers the word (or a [reply] declaration next to the copy) settles it.
    rules = persona / "auto_reply" / "rules.toml"
    rule = '\n[[rule]]\nid = "tasting"\nany = ["试饮"]\nreply = "auto_reply/address"\n'
    edit(rules, rules.read_text(encoding="utf-8") + rule)
    sim = await make(tmp_path)
    try:
        assert lint.app_unanswered(sim.app) == []
    finally:
        await sim.close()


async def test_the_shipped_persona_names_no_word_nothing_answers(tmp_path: Path) -> None:
    # The default plugins on the shipped copy: operator copy of a plugin that is off (the
    # calendar's 回复「朋友圈计划 帖子id」) names a command, not a customer's word.
    sim = await ChatSim.create(
        tmp_path / "data", plugins=["greeter", "auto_reply", "friends", "groups", "admin"]
    )
    try:
        assert lint.app_unanswered(sim.app) == []
    finally:
        await sim.close()


# -- hand-off ----------------------------------------------------------------------------------


async def test_handoff_pauses_tells_customer_and_staff_then_staff_hand_back(sim: ChatSim) -> None:
    await sim.say("alice", "桂花乌龙还有货吗")
    said = await sim.say("alice", "转人工")
    assert said.keys == ["auto_reply/handoff", "auto_reply/handoff_staff"]
    customer, staff = said.sent
    assert customer.to == "alice" and staff.to == "admin" and staff.cls == "service"
    assert "桂花乌龙还有货吗" in staff.text and "#1" in staff.text and "alice" in staff.text
    assert sim.app.pauses.reason("alice") == "handoff"
    assert (await sim.say("alice", "价格")).keys == []  # the bot keeps quiet
    [handoff] = events(sim, "auto_reply.handoff")
    assert handoff["ticket"] == 1 and handoff["reason"] == "keyword" and handoff["notified"] == 1

    listing = await sim.say("admin", "转人工列表")
    assert listing.keys == ["auto_reply/handoff_list"] and "#1" in listing.texts[0]
    done = await sim.say("admin", "结束人工 1")
    assert done.keys == ["auto_reply/handback_done"]
    assert sim.app.pauses.reason("alice") is None
    assert (await sim.say("alice", "价格")).keys == ["auto_reply/price"]
    [ended] = events(sim, "auto_reply.handoff_ended")
    assert ended["how"] == "staff" and ended["ticket"] == 1


async def test_handoff_words_are_data_and_match_whole_or_inside(sim: ChatSim) -> None:
    assert (await sim.say("alice", "人工")).keys[0] == "auto_reply/handoff"
    assert (await sim.say("bob", "人工智能好厉害")).keys == ["core/fallback"]  # not "人工"
    assert (await sim.say("carol", "麻烦帮我转人工谢谢")).keys[0] == "auto_reply/handoff"


async def test_handoff_to_a_staff_room(tmp_path: Path) -> None:
    sim = await make(
        tmp_path, AUTO_REPLY_STAFF_ROOM_ID="staff_room", AUTO_REPLY_NOTIFY_ADMINS="false"
    )
    try:
        said = await sim.say("alice", "找客服")
        assert said.keys == ["auto_reply/handoff", "auto_reply/handoff_staff"]
        assert said.sent[1].to == "staff_room"
    finally:
        await sim.close()


async def test_handback_without_number_when_one_is_open_and_by_contact_id(sim: ChatSim) -> None:
    await sim.say("alice", "转人工")
    assert (await sim.say("admin", "结束人工")).keys == ["auto_reply/handback_done"]
    await sim.say("bob", "转人工")
    await sim.say("carol", "转人工")
    unknown = await sim.say("admin", "结束人工")  # two open: which one?
    assert unknown.keys == ["auto_reply/handback_unknown"] and "#2" in unknown.texts[0]
    assert (await sim.say("admin", "结束人工 carol")).keys == ["auto_reply/handback_done"]
    assert sim.app.pauses.reason("carol") is None and sim.app.pauses.reason("bob") == "handoff"
    assert (await sim.say("admin", "结束人工 #9")).keys == ["auto_reply/handback_unknown"]


async def test_handoff_times_out_and_staff_hear_if_nobody_answered(sim: ChatSim) -> None:
    await sim.say("alice", "转人工")
    later = await sim.advance(121 * 60)
    assert later.keys == ["auto_reply/handoff_expired"] and later.sent[0].to == "admin"
    assert (await sim.say("alice", "价格")).keys == ["auto_reply/price"]
    assert events(sim, "auto_reply.handoff_ended")[0]["how"] == "timeout"


async def test_a_rule_can_hand_off(sim: ChatSim) -> None:
    said = await sim.say("alice", "收到的茶叶罐子破损了")
    assert said.keys == ["auto_reply/complaint", "auto_reply/handoff_staff"]
    assert sim.app.pauses.reason("alice") == "handoff"
    assert events(sim, "auto_reply.handoff")[0]["reason"] == "complaint"


async def test_human_takeover_pauses_and_marks_the_handoff_answered(sim: ChatSim) -> None:
    await sim.say("alice", "转人工")
    await sim.send_event(HumanTakeover("alice", sim.clock.now(), id="t1"))
    assert sim.app.pauses.reason("alice") == "takeover"
    assert (await sim.say("alice", "价格")).keys == []
    # Staff answered from the phone, so the expiry is quiet.
    later = await sim.advance(31 * 60)
    assert later.keys == []
    assert (await sim.say("alice", "价格")).keys == ["auto_reply/price"]
    assert events(sim, "auto_reply.handoff_ended")[0]["answered"] is True


async def test_takeover_without_handoff_keeps_the_bot_quiet(sim: ChatSim) -> None:
    await sim.send_event(HumanTakeover("bob", sim.clock.now(), id="t2"))
    assert (await sim.say("bob", "价格")).keys == []
    assert (await sim.say("bob", "转人工")).keys == []


# -- business hours ----------------------------------------------------------------------------


async def test_off_hours_notice_once_per_night_and_morning_summary(tmp_path: Path) -> None:
    sim = await make(tmp_path, start=NIGHT)
    try:
        said = await sim.say("alice", "你们有礼盒装吗")
        assert said.keys == ["auto_reply/off_hours"] and "明天 09:00" in said.texts[0]
        assert (await sim.say("alice", "想送人")).keys == []  # told once this night
        assert (await sim.say("alice", "运费多少")).keys == ["auto_reply/shipping"]  # always
        assert (await sim.say("alice", "能拉我进群吗")).keys == []  # hours="open", told
        assert (await sim.say("bob", "在吗")).keys == ["auto_reply/off_hours"]
        morning = await sim.advance(10.5 * 3600)  # to 09:00
        assert morning.keys == ["auto_reply/morning_summary"]
        summary = morning.sent[0]
        assert summary.to == "admin" and summary.at.hour == 9
        assert "你们有礼盒装吗" in summary.text and "bob" in summary.text
        assert "运费多少" not in summary.text  # answered by a rule: not queued
        # Delivered once; the next night starts over.
        assert (await sim.advance(3600)).keys == []
        assert (await sim.say("alice", "你好")).keys == ["core/fallback"]
    finally:
        await sim.close()


async def test_handoff_at_night_is_promised_for_the_morning(tmp_path: Path) -> None:
    sim = await make(tmp_path, start=NIGHT)
    try:
        said = await sim.say("alice", "转人工")
        assert said.keys == ["auto_reply/handoff", "auto_reply/handoff_staff"]
        assert "明天 09:00" in said.texts[0]
        assert events(sim, "auto_reply.handoff")[0]["open"] is False
    finally:
        await sim.close()


async def test_closed_dates_and_weekdays(tmp_path: Path) -> None:
    persona_copy(tmp_path)
    rules = tmp_path / "persona" / "auto_reply" / "rules.toml"
    text = rules.read_text(encoding="utf-8").replace(
        "closed_dates = []", 'closed_dates = ["2026-11-23"]'
    )
    edit(rules, text)
    sim = await make(tmp_path)  # Monday 10:00, but closed today
    try:
        said = await sim.say("alice", "在吗")
        assert said.keys == ["auto_reply/off_hours"]
        assert "明天 09:00" in said.texts[0]
    finally:
        await sim.close()


# -- opt-out -----------------------------------------------------------------------------------


async def test_opt_out_is_the_governors_and_replies_still_answer(sim: ChatSim) -> None:
    assert (await sim.say("alice", "退订")).keys == ["core/optout_confirm"]
    assert sim.app.ledger.is_opted_out("alice")
    assert events(sim, "auto_reply.reply") == []
    # Opting out of marketing is not opting out of service: her own question is answered.
    assert (await sim.say("alice", "价格")).keys == ["auto_reply/price"]
    # ...and it is honoured even while a human has the chat.
    await sim.say("bob", "转人工")
    assert (await sim.say("bob", "退订")).keys == ["core/optout_confirm"]


# -- data files: validation and hot reload -----------------------------------------------------


async def test_rules_reload_on_change(sim: ChatSim, tmp_path: Path) -> None:
    rules = tmp_path / "persona" / "auto_reply" / "rules.toml"
    edit(
        rules,
        rules.read_text(encoding="utf-8")
        + '\n[[rule]]\nid = "gift"\nany = ["礼盒"]\nreply = "auto_reply/shipping"\n',
    )
    await sim.advance(3)
    assert (await sim.say("alice", "有礼盒吗")).keys == ["auto_reply/shipping"]
    reload = events(sim, "auto_reply.data_reload")[-1]
    assert reload["ok"] is True and reload["rules"] == 9  # 7 in the file + gift + not_sold


async def test_a_broken_edit_keeps_the_last_good_rules_and_names_file_and_line(
    sim: ChatSim, tmp_path: Path
) -> None:
    rules = tmp_path / "persona" / "auto_reply" / "rules.toml"
    good = rules.read_text(encoding="utf-8")
    lines = good.splitlines()
    at = lines.index('reply = "auto_reply/price"') + 1  # 1-based, as editors count
    lines[at - 1] = 'reply = "auto_reply/no_such_key"'
    edit(rules, "\n".join(lines) + "\n")
    await sim.advance(3)
    said = await sim.say("alice", "价格")
    assert said.keys == ["auto_reply/data_alert", "auto_reply/price"]  # old rules serve
    alert = said.sent[0]
    assert alert.to == "admin"
    assert f"rules.toml 第 {at} 行" in alert.text and "no_such_key" in alert.text
    [reload] = events(sim, "auto_reply.data_reload")
    assert reload["ok"] is False and reload["line"] == at
    assert reload["file"].endswith("auto_reply/rules.toml")
    # TOML syntax errors too; fixing the file brings the new version in.
    edit(rules, good + "\n[[rule]\n")
    await sim.advance(3)
    said = await sim.say("bob", "价格")
    assert said.keys == ["auto_reply/data_alert", "auto_reply/price"]
    assert f"第 {len(good.splitlines()) + 2} 行" in said.texts[0]
    edit(rules, good.replace('"价格", ', '"价格", "报价", '))
    await sim.advance(3)
    assert (await sim.say("carol", "报价")).keys == ["auto_reply/price"]


async def test_a_catalog_error_is_reported_too(sim: ChatSim, tmp_path: Path) -> None:
    catalog = tmp_path / "persona" / "auto_reply" / "catalog.toml"
    edit(catalog, catalog.read_text(encoding="utf-8").replace('"小种", ', '"桂花茶", '))
    said = await sim.advance(600)  # the sweep job notices even without traffic
    assert said.keys == ["auto_reply/data_alert"]
    assert "catalog.toml" in said.texts[0] and "osmanthus_oolong" in said.texts[0]
    assert (await sim.say("alice", "小种")).keys == ["auto_reply/product_card"]  # old catalog


@pytest.mark.parametrize(
    ("rule", "where"),
    [
        ('id = "x"\nany = ["a"]\nreply = "auto_reply/missing"', "文案键「auto_reply/missing」没有"),
        ('id = "x"\nany = ["a"]\nscope = ["everywhere"]\nreply = "auto_reply/price"', "的 scope："),
        ('id = "x"\nregex = "(unclosed"\nreply = "auto_reply/price"', "正则表达式「(unclosed」"),
        ('id = "x"\nreply = "auto_reply/price"', "至少要写 any、all、exact、regex 中的一项"),
        ('id = "x"\nany = ["a"]\nscope = ["room"]\nreply = "auto_reply/price"', "在 rooms 里列出"),
        ('id = "x"\nany = ["a"]\nhandoff = true\nscope = ["room_mention"]', "转人工会暂停私聊"),
        ('id = "x"\nany = ["a"]\nreply = "auto_reply/price"\ncolour = "red"', "不认识这一项"),
        ('id = "price"\nany = ["a"]\nreply = "auto_reply/price"', "id「price」和第 3 条规则重复了"),
        (
            'id = "x"\nany = ["a"]\nreply = "greeter/hello"',
            "「greeter/hello」不是自动回复能用的文案：要用 auto_reply/、broadcasts/、calendar/",
        ),
    ],
)
async def test_bad_rules_stop_start_up_naming_file_line_and_key(
    tmp_path: Path, rule: str, where: str
) -> None:
    persona_copy(tmp_path)
    rules = tmp_path / "persona" / "auto_reply" / "rules.toml"
    text = rules.read_text(encoding="utf-8")
    line = len(text.splitlines()) + 3
    edit(rules, text + "\n[[rule]]\n" + rule + "\n")
    with pytest.raises(StartupError) as caught:
        await make(tmp_path)
    message = str(caught.value)
    assert "auto_reply/rules.toml 第 " in message and where in message
    assert any(f"rules.toml 第 {n} 行：" in message for n in range(line - 1, line + 4))
    assert "（id = x）" in message or "（id = price）" in message
    assert not re.search(r"expected|unknown|needs|also used|persona key", message)


async def test_bad_hours_name_the_key(tmp_path: Path) -> None:
    persona_copy(tmp_path)
    rules = tmp_path / "persona" / "auto_reply" / "rules.toml"
    lines = rules.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("open = "))
    lines[at] = 'open = "9点-21点"'
    edit(rules, "\n".join(lines))
    with pytest.raises(StartupError) as caught:
        await make(tmp_path)
    assert f"rules.toml 第 {at + 1} 行：[hours] 的 open：营业时间要写成" in str(caught.value)
    assert "现在是 9点-21点" in str(caught.value)


@pytest.mark.parametrize(
    ("window", "days", "moment", "is_open", "opens"),
    [
        ("09:00-21:00", [1, 2, 3, 4, 5], "2026-11-23 08:59", False, "2026-11-23 09:00"),
        ("09:00-21:00", [1, 2, 3, 4, 5], "2026-11-23 21:00", False, "2026-11-24 09:00"),
        ("09:00-21:00", [1, 2, 3, 4, 5], "2026-11-27 22:00", False, "2026-11-30 09:00"),
        ("20:00-02:00", [5], "2026-11-28 01:30", True, "2026-11-28 01:30"),  # Friday's night
        ("20:00-02:00", [5], "2026-11-28 02:00", False, "2026-12-04 20:00"),
        ("always", [1, 2, 3, 4, 5, 6, 7], "2026-11-23 03:00", True, "2026-11-23 03:00"),
    ],
)
def test_business_hours(
    window: str, days: list[int], moment: str, is_open: bool, opens: str
) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    start, end = parse_window(window)
    hours = Hours(start=start, end=end, days=frozenset(days))
    now = datetime.fromisoformat(moment).replace(tzinfo=tz)
    assert hours.is_open(now) is is_open
    assert hours.next_open(now) == datetime.fromisoformat(opens).replace(tzinfo=tz)


# -- operator commands -------------------------------------------------------------------------


async def test_try_reply_and_status_for_operators(sim: ChatSim) -> None:
    said = await sim.say("admin", "试回复 桂花乌龙多少钱")
    assert said.keys == ["auto_reply/try_result"] and said.sent[0].to == "admin"
    assert "桂花乌龙" in said.texts[0] and "¥68" in said.texts[0]
    assert events(sim, "auto_reply.reply") == []  # nothing was answered for real
    said = await sim.say("admin", "试回复 快递几天到")
    assert "shipping" in said.texts[0]
    status = await sim.say("admin", "自动回复状态")
    assert status.keys == ["auto_reply/status"]
    assert "8 条规则" in status.texts[0] and "3 个商品" in status.texts[0]


async def test_a_message_is_matched_against_the_rules_once(
    sim: ChatSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = sim.app.context("auto_reply").state
    asked: list[str] = []
    choose = st.choose

    def counted(text: str, *args: Any) -> Any:
        asked.append(text)
        return choose(text, *args)

    monkeypatch.setattr(st, "choose", counted)
    assert (await sim.say("alice", "快递几天到")).keys == ["auto_reply/shipping"]
    assert asked == ["快递几天到"]  # the route's filter hands its rule to the handler
    asked.clear()
    assert (await sim.say("bob", "今天天气不错")).keys == ["core/fallback"]
    assert asked == ["今天天气不错"]


TOLD = {
    "rule": "会命中规则",
    "product": "会发商品卡片",
    "handoff": "会转人工",
    "off_hours": "现在打烊",
    "fallback": "会发兜底回复",
}


async def test_try_reply_tells_what_a_customer_would_get(sim: ChatSim) -> None:
    texts = ["桂花乌龙多少钱", "快递几天到", "我要投诉", "今天天气不错", "转人工"]
    for n, text in enumerate(texts):
        tried = (await sim.say("admin", "试回复 " + text)).texts[0]
        live = await sim.say(f"customer{n}", text)
        got = events(sim, "auto_reply.reply")[-1]
        assert got["contact_id"] == f"customer{n}" and live.keys[0] == got["key"]
        assert TOLD[got["source"]] in tried, (text, got["source"], tried)
        if got["source"] == "rule":
            assert f"「{got['rule']}」" in tried and got["key"] in tried
    await sim.advance(12 * 3600)  # 22:00: closed
    assert TOLD["off_hours"] in (await sim.say("admin", "试回复 今天天气不错")).texts[0]
    assert (await sim.say("night", "今天天气不错")).keys == ["auto_reply/off_hours"]


async def test_try_reply_without_text_shows_its_usage(sim: ChatSim) -> None:
    said = await sim.say("admin", "试回复")
    assert said.keys == ["core/command_usage"] and said.sent[0].to == "admin"
    assert events(sim, "auto_reply.reply") == []


# -- optional LLM fallback ---------------------------------------------------------------------


class FakeLlm:
    """An OpenAI-compatible chat-completions endpoint on 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer = "桂花乌龙冷泡热泡都可以，冷泡放冰箱四小时最好喝～"
        self.status = 200
        self.hang = threading.Event()  # set: answer at once; clear: hang until released
        self.hang.set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                fake.hang.wait(10)
                payload = json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": fake.answer}}]}
                ).encode()
                try:
                    self.send_response(fake.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (the timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.hang.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLlm]:
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    server = FakeLlm()
    yield server
    server.close()


async def llm_sim(tmp_path: Path, llm: FakeLlm, **env: str) -> ChatSim:
    return await make(
        tmp_path,
        AUTO_REPLY_LLM_ENABLED="true",
        AUTO_REPLY_LLM_BASE_URL=llm.url,
        AUTO_REPLY_LLM_MODEL="tea-mini",
        AUTO_REPLY_LLM_API_KEY="sk-test-secret",
        **env,
    )


async def test_llm_answers_an_unmatched_question_in_the_persona_voice(
    tmp_path: Path, llm: FakeLlm, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await llm_sim(tmp_path, llm)
    try:
        said = await sim.say("alice", "桂花乌龙可以冷泡吗")  # a product: the guide answers
        assert said.keys == ["auto_reply/product_card"]
        said = await sim.say("alice", "冷泡要泡多久")
        assert said.keys == ["auto_reply/llm_answer"] and said.texts == [llm.answer]
        [request] = llm.requests
        assert request["path"] == "/v1/chat/completions"
        assert request["auth"] == "Bearer sk-test-secret"
        body = request["body"]
        assert body["model"] == "tea-mini"
        system, user = body["messages"]
        assert system["role"] == "system" and "阿鱼" in system["content"]
        assert "桂花乌龙" in system["content"]  # catalog facts
        assert user == {"role": "user", "content": "冷泡要泡多久"}
        assert events(sim, "auto_reply.reply")[-1]["source"] == "llm"
        assert events(sim, "auto_reply.llm")[-1]["status"] == "ok"
        # Every LLM answer, not one per window; rooms never ask the LLM.
        assert (await sim.say("alice", "那热泡呢")).keys == ["auto_reply/llm_answer"]
        assert (await sim.say("bob", "@阿鱼 冷泡呢", room="r1", mention=True)).keys == [
            "core/fallback"
        ]
        assert len(llm.requests) == 2
        assert "sk-test-secret" not in caplog.text
    finally:
        await sim.close()


async def test_llm_timeout_falls_back_to_the_template_within_the_timeout(
    tmp_path: Path, llm: FakeLlm
) -> None:
    sim = await llm_sim(tmp_path, llm, AUTO_REPLY_LLM_TIMEOUT_S="0.3")
    llm.hang.clear()
    try:
        loop_time = __import__("time").monotonic
        began = loop_time()
        said = await sim.say("alice", "冷泡要泡多久")
        # The server would hang 10 s; the answer came after the 0.3 s timeout, not the hang.
        assert loop_time() - began < 5
        assert said.keys == ["core/fallback"]
        assert events(sim, "auto_reply.llm")[-1]["status"] == "timeout"
        assert events(sim, "auto_reply.reply")[-1]["source"] == "fallback"
    finally:
        llm.hang.set()
        await sim.close()


async def test_llm_errors_filter_and_budget_fall_back(tmp_path: Path, llm: FakeLlm) -> None:
    sim = await llm_sim(
        tmp_path, llm, AUTO_REPLY_LLM_DAILY_BUDGET="3", AUTO_REPLY_FALLBACK_WINDOW_MIN="0"
    )
    try:
        llm.status = 500
        assert (await sim.say("alice", "冷泡要泡多久")).keys == ["core/fallback"]
        llm.status = 200
        llm.answer = "加我微信号 abc 给你全网最低价"
        assert (await sim.say("bob", "能便宜点吗")).keys == ["core/fallback"]  # filtered
        llm.answer = "详见 https://evil.example.com"
        assert (await sim.say("carol", "茶叶怎么保存")).keys == ["core/fallback"]
        # Budget of 3 used: no fourth call today, and admins hear of it once.
        said = await sim.say("dave", "冷泡要泡多久")
        assert said.keys == ["auto_reply/llm_alert", "core/fallback"]
        assert len(llm.requests) == 3
        statuses = [e["status"] for e in events(sim, "auto_reply.llm")]
        assert statuses == ["http_500", "blocked", "blocked", "budget"]
    finally:
        await sim.close()


async def test_llm_markdown_is_dropped_and_long_answers_cut(tmp_path: Path, llm: FakeLlm) -> None:
    sim = await llm_sim(tmp_path, llm, AUTO_REPLY_LLM_MAX_CHARS="40")
    try:
        llm.answer = "**冷泡**：" + "放冰箱四小时。" * 10
        said = await sim.say("alice", "冷泡要泡多久")
        assert said.keys == ["auto_reply/llm_answer"]
        assert "*" not in said.texts[0] and len(said.texts[0]) <= 40
        assert said.texts[0].endswith("。")
    finally:
        await sim.close()


async def test_llm_settings_are_checked_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="AUTO_REPLY_LLM_BASE_URL"):
        await make(tmp_path, AUTO_REPLY_LLM_ENABLED="true")


async def test_llm_pauses_itself_after_failures_and_caps_each_contact(
    tmp_path: Path, llm: FakeLlm
) -> None:
    sim = await llm_sim(
        tmp_path, llm, AUTO_REPLY_LLM_CONTACT_DAILY="1", AUTO_REPLY_FALLBACK_WINDOW_MIN="0"
    )
    try:
        assert (await sim.say("alice", "冷泡要泡多久")).keys == ["auto_reply/llm_answer"]
        assert (await sim.say("alice", "热泡呢")).keys == ["core/fallback"]  # her 1 a day
        llm.status = 503
        for who in ("b1", "b2"):
            assert (await sim.say(who, "冷泡要泡多久")).keys == ["core/fallback"]
        said = await sim.say("b3", "冷泡要泡多久")  # third failure in a row: pause, tell
        assert said.keys == ["auto_reply/llm_alert", "core/fallback"]
        assert (await sim.say("b4", "冷泡要泡多久")).keys == ["core/fallback"]
        assert len(llm.requests) == 4  # b4 was not sent to a failing provider
        llm.status = 200
        await sim.advance(301)
        assert (await sim.say("b5", "冷泡要泡多久")).keys == ["auto_reply/llm_answer"]
        statuses = [e["status"] for e in events(sim, "auto_reply.llm")]
        assert statuses[1:] == [
            "contact_budget",
            "http_503",
            "http_503",
            "http_503",
            "paused",
            "ok",
        ]
    finally:
        await sim.close()


async def test_handoff_until_staff_hand_back(tmp_path: Path) -> None:
    sim = await make(tmp_path, AUTO_REPLY_HANDOFF_PAUSE_MIN="0")
    try:
        said = await sim.say("alice", "转人工")
        assert "直到你结束人工" in said.texts[1]
        assert (await sim.advance(24 * 3600)).keys == []
        assert (await sim.say("alice", "价格")).keys == []
        await sim.say("admin", "结束人工 alice")
        assert (await sim.say("alice", "价格")).keys == ["auto_reply/price"]
    finally:
        await sim.close()
