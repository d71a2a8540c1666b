"""Operators' control from WeChat: who may command, each command's effect and audit row,
the review queue, the daily report, health alerts, and the logging rules."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from harness import ROOT, ChatSim
from test_boundaries import example_env

from plugins._admin.status import snapshot
from pond import (
    Action,
    ActionClass,
    ActionKind,
    AgendaItem,
    ConfigError,
    Contact,
    Context,
    HandlerError,
    Message,
    Plugin,
    ReviewItem,
    RowStatus,
    Settings,
    StartupError,
    health,
)
from pond.pauses import ALL
from pond.transports.base import TransportError

# -- probe plugins: what other plugins would do ---------------------------------------------------
probe = Plugin("probe", persona=["core/fallback"])


@probe.scheduled("0 12 * * *")
async def notify(ctx: Context) -> None:
    await ctx.send("alice", "core/fallback")


@probe.on_message(priority=50)
async def answer(event: Message, ctx: Context) -> None:
    if event.text == "boom":
        raise RuntimeError("a plugin bug")
    await ctx.reply("core/fallback")


broken = Plugin("broken")


@broken.scheduled("30 12 * * *")
async def explode(ctx: Context) -> None:
    raise RuntimeError("job bug")


@broken.review_source()
async def failing_reviews(ctx: Context) -> list[ReviewItem]:
    raise RuntimeError("review source bug")


@broken.on_reload()
async def failing_reload(ctx: Context) -> list[str]:
    raise RuntimeError("reload bug")


planner = Plugin("planner")


@planner.review_source()
async def requests(ctx: Context) -> list[ReviewItem]:
    return [ReviewItem(kind="friend_request", ref="r1", contact_id="dave", command="status")]


@planner.agenda_source()
async def today(ctx: Context) -> list[AgendaItem]:
    at = ctx.now.replace(hour=20, minute=0)
    return [AgendaItem(at=at, kind="broadcast", ref="b1", detail="broadcasts.weekend", count=300)]


@planner.on_reload()
async def planner_reload(ctx: Context) -> list[str]:
    return ["planner.toml:3: expected a date"]


grower = Plugin("grower")  # what the analytics plugin gives the morning report
asked_for: list[date] = []


@grower.summary_source("growth")
async def grown(ctx: Context, day: date) -> dict[str, object]:
    asked_for.append(day)
    return {
        "new_friends": 3,
        "channels": [{"name": "直播间", "n": 3}],
        "churned": 0,
        "friends": 40,
        "active_contacts": 5,
        "active_ratio": 0.125,
        "converted": 1,
        "revenue": 0,
    }


failing = Plugin("failing")


@failing.summary_source("growth")
async def no_numbers(ctx: Context, day: date) -> dict[str, object]:
    raise RuntimeError("summary source bug")


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await ChatSim.create(tmp_path / "data", plugins=["admin", probe])
    yield chat
    await chat.close()


def audits(sim: ChatSim) -> list[dict[str, object]]:
    return [e["data"] for e in sim.app.store.sql.events(kind="admin.command")]  # type: ignore[misc]


def alerts(said: object, key: str) -> list[str]:
    return [s.to for s in said if s.key == key]  # type: ignore[attr-defined]


# -- who may command ------------------------------------------------------------------------------
async def test_non_admins_get_no_effect_from_admin_commands(sim: ChatSim) -> None:
    for text in ("暂停", "状态", "/暂停", "/whatever", "日报", "待办"):
        said = await sim.say("mallory", text)
        assert [k for k in said.keys if k.startswith("admin/")] == []
    assert sim.app.pauses.reason("mallory") is None
    assert sim.app.pauses.reason(ALL) is None
    assert audits(sim) == []


async def test_commands_only_in_private_chat(sim: ChatSim) -> None:
    said = await sim.say("admin", "暂停", room="r1", mention=True)
    assert "admin/paused" not in said.keys
    assert sim.app.pauses.reason(ALL) is None


async def test_binding_code_then_unbinding(sim: ChatSim) -> None:
    code = sim.app.admins.binding_code
    assert (await sim.say("owner", "状态")).keys == ["core/fallback"]  # a customer, for now
    assert (await sim.say("owner", code)).keys == ["core/admin_bound_alert", "core/admin_bound"]
    assert (await sim.say("owner", "状态")).keys == ["admin/status"]
    said = await sim.say("owner", "管理员")
    assert said.keys == ["admin/admins"] and "owner" in said.texts[0]
    assert (await sim.say("admin", "解绑管理员 owner")).keys == ["admin/unbound"]
    assert not sim.app.admins.is_admin("owner")
    assert (await sim.say("owner", "状态")).keys == ["core/fallback"]
    # The configured admin cannot be unbound from chat, nor the last one.
    await sim.say("admin", "解绑管理员 admin")
    assert sim.app.admins.is_admin("admin")
    unbinds = [e["contact_id"] for e in sim.app.store.sql.events(kind="admin.admin_unbound")]
    assert unbinds == ["owner"]


# -- the binding code -----------------------------------------------------------------------------
CODE = re.compile(r"^pond(-[0-9abcdefghjkmnpqrstvwxyz]{4}){4}$")  # 16 x base32 = 80 bits


def binding_events(sim: ChatSim) -> list[tuple[str, str, object]]:
    kinds = ("admin.bind", "admin.bound")
    rows = [e for e in sim.app.store.sql.events() if str(e["kind"]).startswith(kinds)]
    return [(str(e["kind"]), str(e["contact_id"]), e["data"]) for e in rows]


def raw_events(sim: ChatSim) -> str:
    sim.app.store.sql.flush()
    with sim.app.store.sql.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM events").all()
    return json.dumps([list(r) for r in rows], ensure_ascii=False, default=str)


async def test_the_binding_code_is_long_and_typeable_on_a_phone(sim: ChatSim) -> None:
    code = sim.app.admins.binding_code
    assert CODE.match(code)
    assert sim.app.admins.code().value == code  # asked again while valid: the same code
    typed = code.upper().replace("-", " ")  # the phone capitalises; spaces for dashes
    said = await sim.say(Contact("owner", name="老板"), typed)
    assert [(s.to, s.key) for s in said] == [
        ("admin", "core/admin_bound_alert"),
        ("owner", "core/admin_bound"),
    ]
    assert "老板（owner）" in said.texts[0] and "解绑管理员 owner" in said.texts[0]
    assert sim.app.admins.is_admin("owner")
    assert sim.app.admins.binding_code == ""  # used up; the next one when someone asks


async def test_every_binding_is_told_to_the_admins_there_were(sim: ChatSim) -> None:
    await sim.say("owner", sim.app.admins.binding_code)
    said = await sim.say("carol", sim.app.admins.code().value)
    assert sorted((s.to, s.key) for s in said) == [
        ("admin", "core/admin_bound_alert"),
        ("carol", "core/admin_bound"),
        ("owner", "core/admin_bound_alert"),
    ]
    assert [(kind, who) for kind, who, _ in binding_events(sim)] == [
        ("admin.bound", "owner"),
        ("admin.bound", "carol"),
    ]


async def test_an_expired_code_binds_nobody_and_the_terminal_gives_a_new_one(
    tmp_path: Path,
) -> None:
    sim = await ChatSim.create(
        tmp_path / "data", plugins=["admin", probe], env={"BOT_ADMIN_CODE_TTL_MIN": "10"}
    )
    code = sim.app.admins.binding_code
    await sim.advance(11 * 60)
    assert (await sim.say("owner", code)).keys == ["core/admin_code_expired"]
    assert not sim.app.admins.is_admin("owner")
    fresh = sim.app.admins.code()  # what `scripts/admin.py code` asks the running bot for
    assert fresh.value != code and CODE.match(fresh.value)
    assert (await sim.say("owner", fresh.value)).keys[-1] == "core/admin_bound"
    assert [(kind, who) for kind, who, _ in binding_events(sim)] == [
        ("admin.bind_failed", "owner"),
        ("admin.bound", "owner"),
    ]
    assert binding_events(sim)[0][2] == {"reason": "expired"}
    await sim.close()


async def test_guessing_is_limited_audited_and_alerted_and_a_restart_does_not_reset_it(
    sim: ChatSim,
) -> None:
    code = sim.app.admins.binding_code
    guesses = [f"pond-{n:04d}-0000-0000-0000" for n in range(5)]
    for guess in guesses[:4]:
        # Answered as a wrong code, not as a customer message.
        assert (await sim.say("mallory", guess)).keys == ["core/admin_code_wrong"]
    said = await sim.say(Contact("mallory", name="路人甲"), guesses[4])
    assert [(s.to, s.key) for s in said] == [
        ("admin", "core/admin_code_alert"),
        ("mallory", "core/admin_code_locked"),
    ]
    assert "路人甲（mallory）连续 5 次" in said.texts[0] and "60 分钟" in said.texts[0]
    # Locked: the right code is not even checked, and a flood gets no answers.
    assert (await sim.say("mallory", code)).keys == []
    assert (await sim.say("mallory", "pond-1111-1111-1111-1111")).keys == []
    assert not sim.app.admins.is_admin("mallory")
    await sim.restart()  # the counts are in the database
    assert (await sim.say("mallory", sim.app.admins.code().value)).keys == []
    assert not sim.app.admins.is_admin("mallory")
    # Every attempt is audited with the sender's id, never the text typed.
    assert [(kind, who) for kind, who, _ in binding_events(sim)] == [
        *[("admin.bind_failed", "mallory")] * 5,
        ("admin.bind_locked", "mallory"),
        *[("admin.bind_refused", "mallory")] * 3,
    ]
    assert binding_events(sim)[4][2] == {"reason": "wrong", "tries": 5}
    raw = raw_events(sim)
    assert "pond" not in raw and code.removeprefix("pond-")[:4] not in raw
    # An hour later they may try again (and the owner, meanwhile, was never held up).
    await sim.advance(61 * 60)
    said = await sim.say("mallory", sim.app.admins.code().value)
    assert said.keys == ["core/admin_bound_alert", "core/admin_bound"]


async def test_many_senders_guessing_lock_everyone_out_until_a_new_code(tmp_path: Path) -> None:
    sim = await ChatSim.create(
        tmp_path / "data", plugins=["admin", probe], env={"BOT_ADMIN_CODE_TRIES_TOTAL": "3"}
    )
    code = sim.app.admins.binding_code
    for who in ("m1", "m2"):
        assert (await sim.say(who, "pond-aaaa")).keys == ["core/admin_code_wrong"]
    said = await sim.say("m3", "Pond aaaa")
    assert [(s.to, s.key) for s in said] == [
        ("admin", "core/admin_code_alert"),
        ("m3", "core/admin_code_locked"),
    ]
    assert "共 3 次" in said.texts[0] and "code --new" in said.texts[0]
    # The owner has the right code but nobody binds while the lock holds...
    assert (await sim.say("owner", code)).keys == ["core/admin_code_locked"]
    assert not sim.app.admins.is_admin("owner")
    # ...until the operator at the server asks for a new code.
    fresh = sim.app.admins.code(new=True).value
    assert (await sim.say("owner", fresh)).keys == ["core/admin_bound_alert", "core/admin_bound"]
    await sim.close()


async def test_messages_that_only_look_a_bit_like_a_code_are_customer_messages(
    sim: ChatSim,
) -> None:
    for text in ("pond是什么", "池塘 pond", "ponder this"):
        assert (await sim.say("alice", text)).keys == ["core/fallback"]
    assert binding_events(sim) == []
    # An admin's "pond..." is no attempt either (nothing to bind, nothing to count).
    assert "core/admin_code_wrong" not in (await sim.say("admin", "pond-0000")).keys


@pytest.mark.parametrize(
    "key", ["BOT_ADMIN_CODE_TTL_MIN", "BOT_ADMIN_CODE_TRIES", "BOT_ADMIN_CODE_LOCK_MIN"]
)
async def test_binding_limits_must_be_positive(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        await ChatSim.create(tmp_path / "data", plugins=["admin"], env={key: "0"})


# -- the audit log -------------------------------------------------------------------------------
async def test_the_audit_log_keeps_command_names_and_ids_not_free_text(sim: ChatSim) -> None:
    await sim.say("alice", "你好")  # alice is a contact the bot knows
    await sim.say("admin", "找客户 张三 13800138000")
    await sim.say("admin", "暂停 alice 2h")
    await sim.say("admin", "解绑管理员 alice")
    assert audits(sim) == [
        {"command": "find", "args": ["…", "…"], "origin": "chat"},
        {"command": "pause", "args": ["alice", "2h"], "origin": "chat"},  # plain words
        {"command": "unbind", "args": ["alice"], "origin": "chat"},
    ]
    assert "13800138000" not in raw_events(sim) and "张三" not in raw_events(sim)


# -- bad input ------------------------------------------------------------------------------------
async def test_unknown_slash_command_answers_with_the_command_list(sim: ChatSim) -> None:
    said = await sim.say("admin", "/statu")
    assert said.keys == ["admin/unknown_command"]
    assert "状态（status）" in said.texts[0] and "帮助（help）" in said.texts[0]
    # Without the slash it is a message like any other (admins test the bot as customers).
    assert (await sim.say("admin", "你好")).keys == ["core/fallback"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("暂停 a b c", ""),
        ("暂停 alice 三小时", "看不懂时长"),
        ("恢复 a b", ""),
        ("处理 1", ""),
        ("处理 1 maybe", "已发、重发 或 跳过"),
        ("处理 9 跳过", "没有编号"),
        ("日报 明年", "看不懂日期"),
        ("找客户", ""),
        ("解绑管理员", ""),
    ],
)
async def test_wrong_arguments_answer_with_usage(sim: ChatSim, text: str, problem: str) -> None:
    await sim.say("admin", "待办")  # so that numbers have a listing to refer to
    said = await sim.say("admin", text)
    assert said.keys == ["admin/usage"]
    assert "的用法：" in said.texts[0] and problem in said.texts[0]
    assert sim.app.pauses.reason(ALL) is None


async def test_every_command_is_audited(sim: ChatSim) -> None:
    for text in ("状态", "暂停 5m", "恢复", "重新加载", "待办", "找客户 x", "日报", "管理员"):
        await sim.say("admin", text)
    names = [a["command"] for a in audits(sim)]
    assert names == ["status", "pause", "resume", "reload", "reviews", "find", "report", "admins"]
    assert audits(sim)[1] == {"command": "pause", "args": ["5m"], "origin": "chat"}


# -- status ---------------------------------------------------------------------------------------
async def test_status_shows_counters_caps_breaker_pauses_and_reviews(sim: ChatSim) -> None:
    await sim.say("alice", "你好")
    sim.app.pauses.pause("bob", minutes=30, reason="takeover")
    said = await sim.say("admin", "状态")
    assert said.keys == ["admin/status"]
    text = said.texts[0]
    assert "运行中" in text and "接入方式 memory" in text
    # alice's answer; the status reply itself is counted after
    assert "发消息 1 次（上限 800 次）" in text
    assert "通过好友 0 次（上限 25 次）" in text and "发朋友圈 0 次（上限 10 次）" in text
    assert "已连续运行 不到 1 分钟" in text  # not "0分钟"
    assert "风控熔断：正常" in text
    assert "bob：有人在手机上接手" in text
    assert "待处理：0 项" in text
    snap = await snapshot(sim.app.context("admin"))
    assert snap["counters"][0] == {"kind": "send", "n": 2, "cap": 800}
    assert snap["paused"] == [{"chat_id": "bob", "reason": "takeover", "until": "11-23 10:30"}]


async def test_status_shows_an_open_breaker(sim: ChatSim) -> None:
    sim.transport.failures = [TransportError("操作过于频繁", throttled=True)]
    await sim.advance(2.2 * 3600)  # the probe's 12:00 notification is refused as throttled
    said = await sim.say("admin", "状态")
    text = said.texts[said.keys.index("admin/status")]
    assert "⚠ 暂停中，11-23 12:30 恢复（今天第 1 次）" in text


# -- pause / resume -------------------------------------------------------------------------------
async def test_pause_everything_silences_the_bot_but_not_commands(sim: ChatSim) -> None:
    said = await sim.say("admin", "暂停")
    assert said.keys == ["admin/paused"]
    assert sim.app.pauses.reason(ALL) == "operator"
    assert (await sim.say("alice", "你好")).keys == []  # no automatic answer
    assert (await sim.say("alice", "退订")).keys == ["core/optout_confirm"]  # always honoured
    noon = await sim.advance(2.5 * 3600)
    assert noon.keys == []  # the 12:00 notification waits
    assert (await sim.say("admin", "状态")).keys == ["admin/status"]  # commands still answer
    said = await sim.say("admin", "恢复")
    assert said.keys == ["admin/resumed", "core/fallback"]  # the held notification goes out
    [paused] = sim.app.store.sql.events(kind="admin.paused")
    assert paused["chat_id"] == ALL and paused["data"] == {"minutes": None}
    [resumed] = sim.app.store.sql.events(kind="admin.resumed")
    assert resumed["data"] == {"scope": "everything", "chats": 1}


async def test_pause_one_chat_for_a_while(sim: ChatSim) -> None:
    await sim.say("alice", "你好")
    said = await sim.say("admin", "暂停 alice 30分钟")
    assert said.keys == ["admin/paused"] and "11-23 10:30" in said.texts[0]
    assert "还没见过" not in said.texts[0]
    assert (await sim.say("alice", "在吗")).keys == []
    assert (await sim.say("bob", "在吗")).keys == ["core/fallback"]
    await sim.advance(31 * 60)
    assert (await sim.say("alice", "在吗")).keys == ["core/fallback"]
    said = await sim.say("admin", "暂停 wxid_typo")
    assert "还没见过这个 id" in said.texts[0]


async def test_pause_everything_for_a_duration(sim: ChatSim) -> None:
    await sim.say("admin", "暂停 2h")
    assert sim.app.pauses.reason(ALL) == "operator"
    await sim.advance(2 * 3600 + 1)
    assert sim.app.pauses.reason(ALL) is None


async def test_resume_scopes(sim: ChatSim) -> None:
    await sim.say("admin", "暂停")
    await sim.say("admin", "暂停 alice")
    sim.app.pauses.pause("bob", minutes=None, reason="takeover")
    said = await sim.say("admin", "恢复")
    assert sim.app.pauses.reason(ALL) is None and sim.app.pauses.reason("alice") == "operator"
    assert "仍在暂停的聊天 2 个" in said.texts[0]
    await sim.say("admin", "暂停")
    await sim.say("admin", "恢复 全部")
    assert sim.app.pauses.reason(ALL) is None and sim.app.pauses.reason("alice") is None
    assert sim.app.pauses.reason("bob") == "takeover"  # a human's chat is not ours to resume
    said = await sim.say("admin", "恢复 bob")
    assert sim.app.pauses.reason("bob") is None and "已恢复聊天 bob" in said.texts[0]
    assert "本来就没有暂停" in (await sim.say("admin", "恢复 bob")).texts[0]


# -- reload ---------------------------------------------------------------------------------------
async def persona_copy(tmp_path: Path) -> Path:
    target = tmp_path / "persona"
    shutil.copytree(ROOT / "persona", target)
    return target


async def test_reload_reports_problems_and_keeps_the_last_good_version(tmp_path: Path) -> None:
    persona = await persona_copy(tmp_path)
    sim = await ChatSim.create(
        tmp_path / "data",
        plugins=["admin", probe, planner],
        env={"BOT_PERSONA_DIR": str(persona)},
    )
    try:
        said = await sim.say("admin", "重新加载")
        assert said.keys == ["admin/reload"] and "planner.toml:3" in said.texts[0]
        (persona / "core" / "fallback.j2").write_text("{{ oops", encoding="utf-8")
        (persona / "admin" / "words.toml").write_text("all = 3\n", encoding="utf-8")
        said = await sim.say("admin", "重新加载")
        assert sorted(said.keys) == ["admin/reload", "core/template_alert"]
        report = said.texts[said.keys.index("admin/reload")]
        assert "core/fallback.j2" in report and "words.toml 的 all：要写成词语列表" in report
        assert (await sim.say("alice", "你好")).keys == ["core/fallback"]  # last good copy
        await sim.say("admin", "暂停 全部")  # last good words
        assert sim.app.pauses.reason(ALL) == "operator"
        [event] = sim.app.store.sql.events(kind="app.reloaded", newest_first=True, limit=1)
        assert event["data"] == {"problems": 3}
    finally:
        await sim.close()


async def test_reload_survives_a_failing_hook(tmp_path: Path) -> None:
    sim = await ChatSim.create(tmp_path / "data", plugins=["admin", broken])
    try:
        problems = await sim.app.reload()
        assert problems == {"broken": ["RuntimeError: reload bug"]}
        sim.app.errors.clear()  # strict mode notes the hook's failure; it was reported
    finally:
        await sim.close()


async def test_words_file_is_checked_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "words.toml"
    bad.write_text('all = ["全部"]\n', encoding="utf-8")
    with pytest.raises(StartupError, match=r"words.toml 的 sent：要写成词语列表"):
        await ChatSim.create(
            tmp_path / "data", plugins=["admin"], env={"ADMIN_WORDS_FILE": str(bad)}
        )


# -- reviews --------------------------------------------------------------------------------------
def bulk(sim: ChatSim, job: str, *who: str) -> None:
    actions = [
        Action(
            ActionKind.SEND,
            to=name,
            cls=ActionClass.MARKETING,
            text="新茶上市",
            key="broadcasts/new_tea",
            plugin="broadcasts",
            job=job,
            contact_id=name,
        )
        for name in who
    ]
    sim.app.outbox.enqueue_bulk(job, actions)


async def crash_mid_send(sim: ChatSim, job: str, *who: str) -> None:
    """Rows left "sending" by a kill -9 become "unknown" at the next start."""
    for name in who:
        sim.app.ledger.mark(job, name, RowStatus.SENDING, 0.0)
    await sim.restart()


async def test_unknown_deliveries_are_reviewed_and_resolved(sim: ChatSim) -> None:
    bulk(sim, "spring", "alice", "bob", "carol")
    await crash_mid_send(sim, "spring", "alice", "bob", "carol")
    said = await sim.say("admin", "待办")
    assert said.keys == ["core/unknown_alert", "admin/reviews"]  # the alert came at start
    text = said.texts[1]
    assert "需要处理的事 3 项" in text and "处理 1 重发" in text
    assert "群发未确认送达：alice" in text
    said = await sim.say("admin", "处理 1 重发")
    assert said.keys == ["admin/resolved", "broadcasts/new_tea"]
    assert [s.to for s in said] == ["admin", "alice"]
    assert (await sim.say("admin", "处理 2 已发")).keys == ["admin/resolved"]
    said = await sim.say("admin", "处理 全部 跳过")
    assert "已跳过 1 条" in said.texts[0] and "2 条已经处理过了" in said.texts[0]
    rows = {r.recipient: r.status for r in sim.app.ledger.rows_of("spring")}
    assert rows == {"alice": RowStatus.SENT, "bob": RowStatus.SENT, "carol": RowStatus.SKIPPED}
    assert "没有需要处理的事" in (await sim.say("admin", "待办")).texts[0]
    resolved = [e["data"] for e in sim.app.store.sql.events(kind="admin.resolved")]
    assert [r["outcome"] for r in resolved] == ["resend", "sent", "skip"]  # type: ignore[index]


async def test_resolve_needs_a_listing_first(sim: ChatSim) -> None:
    said = await sim.say("admin", "处理 全部 跳过")
    assert "请先发「待办」" in said.texts[0]


async def test_reviews_aggregate_plugins_and_survive_a_failing_source(tmp_path: Path) -> None:
    sim = await ChatSim.create(tmp_path / "data", plugins=["admin", planner, broken])
    try:
        said = await sim.say("admin", "待办")
        text = said.texts[0]
        assert "1. 好友申请待通过：dave" in text and "→ 发「状态」" in text
        assert "没读出来" in text and "broken" in text
        said = await sim.say("admin", "处理 1 跳过")
        assert "不是群发未确认送达" in said.texts[0]
    finally:
        await sim.close()


# -- find -----------------------------------------------------------------------------------------
async def test_find_turns_a_name_into_an_id(sim: ChatSim) -> None:
    from pond import Contact

    await sim.say(Contact("wxid_a1", name="小美"), "你好")
    await sim.say(Contact("wxid_b2", name="小美妈妈"), "你好")
    await sim.say(Contact("wxid_c3", name="小明"), "你好")
    said = await sim.say("admin", "找客户 小美")
    assert said.keys == ["admin/found"]
    assert (
        "找到 2 位" in said.texts[0] and "wxid_a1" in said.texts[0] and "wxid_b2" in said.texts[0]
    )
    assert "没有找到" in (await sim.say("admin", "找客户 nobody")).texts[0]


# -- the daily report -----------------------------------------------------------------------------
async def test_morning_report_counts_yesterday_from_the_event_store(tmp_path: Path) -> None:
    sim = await ChatSim.create(tmp_path / "data", plugins=["admin", probe, planner])
    try:
        await sim.say("alice", "你好")
        await sim.say("bob", "价格")
        await sim.say("bob", "退订")
        await sim.say("carol", "@bot 在吗", room="r1", mention=True)
        await sim.friend_request("dave", "你好")
        await sim.say("admin", "状态")  # the operator's own chat is not counted
        with pytest.raises(HandlerError):
            await sim.say("erin", "boom")
        morning = await sim.advance(23 * 3600)  # to 09:00 the next day
        [text] = [s.text for s in morning if s.key == "admin/report"]
        assert "昨天（11-23）" in text
        assert "客户消息 5 条（群里 1 条），来自 4 人" in text
        assert "回复 4 条" in text  # alice, bob twice, carol; erin's answer failed
        assert "好友申请 1 个" in text and "退订 1 人" in text
        assert "程序出错 1 次（probe.answer 1）" in text
        assert "待处理：1 项（好友申请待通过 1）" in text
        assert "20:00 群发 id：broadcasts.weekend（300 人）" in text
        said = await sim.say("admin", "日报")
        assert said.keys == ["admin/report"]
        assert "客户消息 5 条" in said.texts[0]  # the same numbers on demand
        said = await sim.say("admin", "日报 今天")
        assert "今天到现在" in said.texts[0] and "客户消息 0 条" in said.texts[0]
        said = await sim.say("admin", "日报 2026-11-23")
        assert "客户消息 5 条" in said.texts[0]
        [sent] = [e["data"] for e in sim.app.store.sql.events(kind="admin.report_sent")]
        assert sent == {"day": "2026-11-23", "admins": 1}
    finally:
        await sim.close()


async def test_morning_report_has_other_plugins_headline_numbers(tmp_path: Path) -> None:
    sim = await ChatSim.create(tmp_path / "data", plugins=["admin", grower])
    try:
        morning = await sim.advance(23 * 3600)  # to 09:00 the next day
        [text] = [s.text for s in morning if s.key == "admin/report"]
        assert "新增好友 3 人（直播间 3），删除 0 人；好友共 40 人" in text
        assert "活跃客户 5 人（占好友 12.5%）；成交 1 人" in text
        assert asked_for[-1] == date(2026, 11, 23)  # yesterday's numbers
    finally:
        await sim.close()


async def test_morning_report_goes_out_without_numbers_that_fail(tmp_path: Path) -> None:
    sim = await ChatSim.create(tmp_path / "data", plugins=["admin", failing])
    try:
        said = await sim.say("admin", "日报")
        assert said.keys == ["admin/report"]
        assert "客户消息 0 条" in said.texts[0] and "新增好友" not in said.texts[0]
    finally:
        await sim.close()


async def test_morning_report_goes_out_even_when_everything_is_paused(sim: ChatSim) -> None:
    await sim.say("admin", "暂停")
    morning = await sim.advance(23 * 3600)
    assert "admin/report" in morning.keys


async def test_morning_report_time_is_configurable(tmp_path: Path) -> None:
    sim = await ChatSim.create(
        tmp_path / "data", plugins=["admin"], env={"JOB_ADMIN_MORNING_REPORT_CRON": "off"}
    )
    try:
        assert "admin.morning_report" not in sim.app.jobs
    finally:
        await sim.close()


# -- alerts ---------------------------------------------------------------------------------------
async def test_transport_alerts_login_logout_reconnect(sim: ChatSim) -> None:
    for status, key in (
        ("login", "core/login_alert"),
        ("logout", "core/logout_alert"),
        ("reconnected", "core/reconnect_alert"),
    ):
        sim.transport.status_listener(status, {"name": "小鱼塘", "downtime_s": 60})
        said = await sim.drain()
        assert alerts(said, key) == ["admin"], status
    said = await sim.say("admin", "状态")
    assert "已登录「小鱼塘」" in said.texts[0]  # the last news was a reconnect


async def test_breaker_alert(sim: ChatSim) -> None:
    sim.transport.failures = [TransportError("操作过于频繁", throttled=True)]
    said = await sim.advance(2.5 * 3600)
    assert alerts(said, "core/breaker_alert") == ["admin"]


async def test_template_and_job_failure_alerts(tmp_path: Path) -> None:
    persona = await persona_copy(tmp_path)
    sim = await ChatSim.create(
        tmp_path / "data", plugins=["admin", broken], env={"BOT_PERSONA_DIR": str(persona)}
    )
    try:
        (persona / "core" / "fallback.j2").write_text("{% if %}", encoding="utf-8")
        sim.app.reload_persona()
        assert alerts(await sim.drain(), "core/template_alert") == ["admin"]
        with pytest.raises(HandlerError):
            await sim.tick("broken.explode")
        keys = [p.action.key for p in sim.transport.performed]
        assert "core/job_alert" in keys
    finally:
        await sim.close()


async def test_unknown_delivery_alert(sim: ChatSim) -> None:
    bulk(sim, "spring", "alice")
    await crash_mid_send(sim, "spring", "alice")
    said = await sim.drain()
    assert alerts(said, "core/unknown_alert") == ["admin"]


async def test_cap_alert(tmp_path: Path) -> None:
    sim = await ChatSim.create(
        tmp_path / "data", plugins=["admin", probe], env={"OUTBOX_CAP_ACCEPT_FRIEND": "0"}
    )
    try:
        Context(sim.app, sim.app.plugins["probe"]).act(
            Action(ActionKind.ACCEPT_FRIEND, to="dave", ticket="t1")
        )
        assert alerts(await sim.drain(), "core/cap_alert") == ["admin"]
    finally:
        await sim.close()


async def test_restart_after_a_crash_is_reported(sim: ChatSim) -> None:
    first = health.Heartbeat(sim.app)
    await first.start()
    assert alerts(await sim.drain(), "admin/restart_alert") == []  # nothing before it
    await sim.restart()  # the heartbeat never marked a clean stop: a crash
    sim.clock.advance(300)
    again = health.Heartbeat(sim.app)
    await again.start()
    said = await sim.drain()
    assert alerts(said, "admin/restart_alert") == ["admin"]
    assert "约 5 分钟前" in said.texts[0]
    again.close()
    await sim.restart()
    third = health.Heartbeat(sim.app)
    await third.start()
    assert alerts(await sim.drain(), "admin/restart_alert") == []  # a clean stop: no alert


async def test_error_alert_at_most_once_an_hour(sim: ChatSim) -> None:
    beat = health.Heartbeat(sim.app)
    await beat.start()
    for _ in range(2):
        with pytest.raises(HandlerError):
            await sim.say("erin", "boom")
    await beat.tick()
    said = await sim.drain()
    assert alerts(said, "admin/error_alert") == ["admin"]
    assert "最近有 2 次处理出错（probe.answer 2 次）" in said.texts[0]
    with pytest.raises(HandlerError):
        await sim.say("erin", "boom")
    await beat.tick()
    assert alerts(await sim.drain(), "admin/error_alert") == []
    sim.clock.advance(3601)
    await beat.tick()
    assert alerts(await sim.drain(), "admin/error_alert") == ["admin"]


async def test_disk_and_queue_alerts(tmp_path: Path) -> None:
    sim = await ChatSim.create(
        tmp_path / "data",
        plugins=["admin", probe],
        env={"HEALTH_DISK_MIN_MB": str(10**12), "HEALTH_QUEUE_ALERT": "1"},
    )
    try:
        beat = health.Heartbeat(sim.app)
        await sim.say("admin", "暂停")
        await sim.advance(2.5 * 3600)  # the 12:00 notification is held in the queue
        await beat.tick()
        said = await sim.drain()
        assert alerts(said, "admin/disk_alert") == ["admin"]
        assert alerts(said, "admin/queue_alert") == ["admin"]
        await beat.tick()  # once a day / once an hour
        assert alerts(await sim.drain(), "admin/disk_alert") == []
    finally:
        await sim.close()


# -- heartbeat ------------------------------------------------------------------------------------
async def test_heartbeat_records_liveness(sim: ChatSim) -> None:
    beat = health.Heartbeat(sim.app)
    await beat.start()
    row = health.read_heartbeat(sim.app.store)
    assert row is not None and row["pid"] == os.getpid() and row["stopped"] is False
    assert health.is_live(row, sim.clock.now(), beat.config)
    on_disk = json.loads((sim.data_dir / "heartbeat.json").read_text())
    assert on_disk == row
    assert stat.S_IMODE((sim.data_dir / "heartbeat.json").stat().st_mode) == 0o600
    sim.clock.advance(beat.config.stale_after_s + 1)
    assert not health.is_live(row, sim.clock.now(), beat.config)
    beat.close()
    assert health.read_heartbeat(sim.app.store)["stopped"] is True  # type: ignore[index]


async def test_a_second_bot_on_the_same_data_is_refused(sim: ChatSim) -> None:
    other = health.Heartbeat(sim.app)
    row = other.beat()
    row["pid"] = os.getppid()  # a live process that is not us
    sim.app.store.namespace("health").set("heartbeat", row)
    with pytest.raises(StartupError, match="另一个 pond 进程"):
        health.Heartbeat(sim.app).check_single()
    row["stopped"] = True
    sim.app.store.namespace("health").set("heartbeat", row)
    health.Heartbeat(sim.app).check_single()


# -- logging and files ----------------------------------------------------------------------------
def test_logs_are_redacted_and_json_lines(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "pond.log"
    settings = Settings.from_mapping(
        {
            "BOT_LOG_FILE": str(log_file),
            "WECHATY_PUPPET_SERVICE_TOKEN": "puppet_secret_1234",
            "DATABASE_URL": "postgresql://pond:hunter22@db/pond",
            "LLM_API_KEY": "sk-abcdefgh",
        }
    )
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        health.configure_logging(settings, stream)
        log = logging.getLogger("pond.test")
        log.warning("token is %s", "puppet_secret_1234")
        log.warning("db at postgresql://pond:hunter22@db/pond, key sk-abcdefgh")
        try:
            raise ValueError("Bearer abc.def.ghi")
        except ValueError:
            log.exception("failed with token=zzz999")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved
    text = stream.getvalue() + log_file.read_text(encoding="utf-8")
    for secret in ("puppet_secret_1234", "hunter22", "sk-abcdefgh", "abc.def.ghi", "zzz999"):
        assert secret not in text
    lines = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    assert [line["level"] for line in lines] == ["WARNING", "WARNING", "ERROR"]
    assert lines[0]["msg"] == "token is ***" and lines[0]["logger"] == "pond.test"
    assert "ValueError" in lines[2]["exc"]
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600


async def test_no_message_text_is_logged_at_info(
    sim: ChatSim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await sim.say("alice", "我的手机号是13800138000")
    await sim.say("admin", "状态")
    await sim.say("admin", "暂停 alice 30分钟")
    await sim.advance(3 * 3600)
    assert "13800138000" not in caplog.text
    assert "人工服务时间" not in caplog.text  # nor what the bot said


def test_data_files_are_made_owner_only(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    for path in (tmp_path / "pond.sqlite3", tmp_path / "docs" / "core.json"):
        path.write_text("x")
        path.chmod(0o644)
    health.secure_data_dir(tmp_path)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "docs").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "pond.sqlite3").stat().st_mode) == 0o600


# -- configuration --------------------------------------------------------------------------------
def test_health_settings_are_documented_with_their_defaults() -> None:
    from pond.config import section_keys

    example = example_env()
    assert set(section_keys(health.HealthConfig, "HEALTH")) <= set(example)
    assert health.health_config(Settings.from_mapping(example)) == health.HealthConfig()


async def test_the_report_day_is_the_bot_timezone_day(sim: ChatSim) -> None:
    from plugins._admin.report import window

    start, end = window(sim.app.context("admin"), date(2026, 11, 22))
    assert end - start == timedelta(days=1) and start.utcoffset() == timedelta(hours=8)


# -- the operator's day: calendar posts and broadcasts in 待办, the report and 朋友圈计划 ----------
DAY_CALENDAR = """
[[post]]
id = "morning"
title = "晨间茶"
key = "calendar/weekly_life"
cron = "30 9 * * *"

[[post]]
id = "evening"
title = "晚安茶"
key = "calendar/weekly_life"
cron = "0 18 * * *"
"""


async def operators_day(tmp_path: Path) -> ChatSim:
    """Monday 08:00: two Moments posts today that staff publish by hand (no Moments API),
    a broadcast confirmed for 20:00 and another one created but never started."""
    folder = tmp_path / "cal"
    folder.mkdir()
    shutil.copy(ROOT / "persona" / "calendar" / "holidays.toml", folder / "holidays.toml")
    (folder / "calendar.toml").write_text(DAY_CALENDAR, encoding="utf-8")
    campaigns = tmp_path / "c"
    campaigns.mkdir()
    for name, start in (("double12", "2026-11-23 20:00"), ("spring", "now")):
        (campaigns / f"{name}.toml").write_text(
            f'title = "{name} sale"\ncopy = "broadcasts/copy_new_tea"\nsegment = "vip"\n'
            f'start = "{start}"\n[vars]\nproduct = "桂花乌龙"\nprice = 68\n',
            encoding="utf-8",
        )
    env = {
        "CALENDAR_FILE": str(folder / "calendar.toml"),
        "CALENDAR_FALLBACK": "staff",
        "BROADCASTS_CAMPAIGNS_DIR": str(campaigns),
        # Off the calendar's minutes: the simulated clock of this branch runs one job a minute.
        "JOB_BROADCASTS_TICK_CRON": "7 * * * *",
        "OUTBOX_TYPING_MAX_S": "0",
    }
    sim = await ChatSim.create(
        tmp_path / "data",
        plugins=["admin", "calendar", "broadcasts"],
        env=env,
        start=datetime(2026, 11, 23, 8, 0),
    )
    now = sim.clock.now()
    for cid in ("c1", "c2", "c3"):
        sim.app.book.upsert(cid, now, name=cid)
        sim.app.book.tag(cid, ("vip",), now)
    assert (await sim.say("admin", "群发创建 double12")).keys == ["broadcasts/created"]
    assert (await sim.say("admin", "群发开始 double12 3")).keys == ["broadcasts/changed"]
    assert (await sim.say("admin", "群发创建 spring")).keys == ["broadcasts/created"]
    return sim


async def test_the_morning_report_lists_todays_posts_and_the_scheduled_broadcast(
    tmp_path: Path,
) -> None:
    sim = await operators_day(tmp_path)
    said = await sim.advance(3600 + 30)  # 09:00:30
    [report] = [s.text for s in said if s.key == "admin/report"]
    plan = report.split("接下来的安排：")[1]
    assert "无" not in plan.splitlines()[0]
    assert "09:30 朋友圈「晨间茶」 id：morning" in plan
    assert "18:00 朋友圈「晚安茶」 id：evening" in plan
    assert "20:00 群发「double12 sale」 id：double12（3 人）" in plan
    assert "待处理：1 项（群发待确认开始 1）" in report  # spring was created, never started
    await sim.close()


async def test_todo_shows_the_post_waiting_for_staff_and_the_broadcasts_with_their_ids(
    tmp_path: Path,
) -> None:
    sim = await operators_day(tmp_path)
    handed = await sim.advance(90 * 60 + 60)  # 09:31: the post is handed to the admin
    assert "calendar/staff_post" in handed.keys
    todo = (await sim.say("admin", "待办")).texts[0]
    assert "没有需要处理的事" not in todo
    assert "待人工发布的朋友圈「晨间茶」" in todo and "发「已发 morning」" in todo
    assert "群发待确认开始「spring sale」" in todo and "发「群发开始 spring」" in todo
    later = todo.split("接下来的安排：")[1]
    assert "18:00 朋友圈「晚安茶」 id：evening" in later
    assert "20:00 群发「double12 sale」 id：double12（3 人）" in later
    assert (await sim.say("admin", "已发 morning")).keys == ["calendar/confirmed"]
    todo = (await sim.say("admin", "待办")).texts[0]
    assert "晨间茶" not in todo and "spring" in todo
    await sim.close()


async def test_the_posts_plan_shows_ids_posts_waiting_for_staff_and_broadcasts(
    tmp_path: Path,
) -> None:
    sim = await operators_day(tmp_path)
    await sim.advance(90 * 60 + 60)
    plan = (await sim.say("admin", "朋友圈计划")).texts[0]
    waiting, rest = plan.split("已安排的群发")
    assert "等你人工发布" in waiting and "晨间茶（id：morning）" in waiting
    assert "「已发 帖子id」" in waiting
    assert "11-23 20:00 double12 sale（id：double12），3 人" in rest
    assert "18:00 晚安茶（id：evening）" in rest
    await sim.close()
