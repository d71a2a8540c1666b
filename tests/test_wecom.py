"""End to end: the real bot (App + WecomTransport) against a fake 企业微信 API on loopback
(tests/wecom_server.py, a real HTTP server answering the documented shapes, errcodes and
token expiry), with callbacks encrypted and POSTed to pond's real callback endpoint.

Assertions are on what the fake server recorded. Waits have deadlines only so a broken bot
fails instead of hanging; nothing asserts on timing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from wecom_server import Callbacks, FakeWecom, servicer_writes, serving

import bot as bot_module
import plugins as plugin_modules
from pond import (
    Action,
    ActionClass,
    ActionKind,
    App,
    Contact,
    Message,
    Room,
    Settings,
    SystemClock,
)
from pond.transports.base import REPLY, TAG, WELCOME, Mode, mode_of
from pond.transports.wecom import WecomTransport
from pond.transports.wecom_crypto import WecomCrypto

ROOT = Path(__file__).resolve().parent.parent
CORP_ID = "ww1234567890abcdef"
SECRET = "s3cr3t-" + "x" * 36
TOKEN = "cbToken123"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"  # the docs' sample key
STAFF = "zhangsan"  # a staff member: owns the customers, and is the bot's admin
KF = "wkAJ2GCAAAZSfhHCt7IFSvLKtMPxyJTw"
DEADLINE_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(check: Callable[[], Any], *, what: str, timeout: float = DEADLINE_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


FAST = {
    "OUTBOX_SWITCH_GAP_S": "0",
    "OUTBOX_CHAT_GAP_S": "0",
    "OUTBOX_TYPING_MAX_S": "0",
    "OUTBOX_BURST": "100",
    "OUTBOX_RATE_PER_MIN": "100000",
    "OUTBOX_QUIET_HOURS": "off",
    "OUTBOX_RETRY_BACKOFF_S": "0.2",
    "OUTBOX_BREAKER_COOLDOWN_MIN": "0.02",
    "FRIENDS_GREET_DELAY_S": "0.5",
}


def wecom_env(data_dir: Path, fake: FakeWecom, port: int) -> dict[str, str]:
    return {
        "BOT_DATA_DIR": str(data_dir),
        "BOT_PERSONA_DIR": str(ROOT / "persona"),
        "BOT_ADMIN_IDS": STAFF,
        "BOT_TRANSPORT": "wecom",
        "WECOM_CORP_ID": CORP_ID,
        "WECOM_SECRET": SECRET,
        "WECOM_AGENT_ID": "1000002",
        "WECOM_TOKEN": TOKEN,
        "WECOM_AES_KEY": AES_KEY,
        "WECOM_API_BASE": f"http://127.0.0.1:{fake.port}",
        "WECOM_CALLBACK_PORT": str(port),
        "WECOM_STAFF_IDS": STAFF,
        **FAST,
    }


class Bot:
    def __init__(self, app: App, transport: WecomTransport, fake: FakeWecom) -> None:
        self.app = app
        self.transport = transport
        self.fake = fake
        self.records: list[tuple[str, dict[str, Any]]] = []
        record = app.record

        def recording(name: str, /, **data: Any) -> None:
            self.records.append((name, data))
            record(name, **data)

        app.record = recording  # type: ignore[method-assign]
        url = f"http://127.0.0.1:{transport.callback_port}{transport.settings.callback_path}"
        self.callbacks = Callbacks(WecomCrypto(TOKEN, AES_KEY, CORP_ID), url, CORP_ID)

    def recorded(self, name: str) -> list[dict[str, Any]]:
        return [data for n, data in self.records if n == name]

    async def act(self, action: Action) -> str:
        outcome = await self.app.outbox.submit(action)
        return f"{outcome.status}:{outcome.reason}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeWecom]:
    async with serving(FakeWecom(CORP_ID, SECRET)) as server:
        yield server


@contextlib.asynccontextmanager
async def booted(
    tmp_path: Path,
    fake: FakeWecom,
    caplog: pytest.LogCaptureFixture,
    plugins: list[str],
    **env: str,
) -> AsyncIterator[Bot]:
    caplog.set_level(logging.DEBUG)
    settings = Settings.from_mapping({**wecom_env(tmp_path / "data", fake, free_port()), **env})
    transport = WecomTransport(
        settings.wecom,
        data_dir=settings.bot.data_dir,
        timezone=settings.bot.timezone,
        tasks_every_s=0.2,
        task_gather_s=0.3,
    )
    app = App(settings, transport, clock=SystemClock(settings.bot.timezone), strict=True)
    for plugin in plugin_modules.load(plugins):
        app.include(plugin)
    bot = Bot(app, transport, fake)
    await app.start()
    app.start_background(scheduler=False)
    try:
        yield bot
    finally:
        await asyncio.wait_for(app.stop(), DEADLINE_S)
        assert app.errors == [], app.errors
        # No secret, token or key in any log line, at any level.
        issued = list(fake.tokens)
        leaks = [s for s in (SECRET, AES_KEY, *issued) if s in caplog.text]
        assert leaks == [], "a secret appears in the logs"


@pytest.fixture
async def running(
    tmp_path: Path, fake: FakeWecom, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Bot]:
    async with booted(tmp_path, fake, caplog, ["friends", "auto_reply"]) as bot:
        yield bot


def add_event(bot: Bot, external: str, state: str, code: str) -> str:
    return bot.callbacks.event(
        "change_external_contact",
        ChangeType="add_external_contact",
        UserID=STAFF,
        ExternalUserID=external,
        State=state,
        WelcomeCode=code,
    )


# -- scenarios ------------------------------------------------------------------------------------
async def test_a_customer_from_a_channel_qr_is_tagged_and_welcomed_once_despite_3_deliveries(
    running: Bot, fake: FakeWecom
) -> None:
    # The operator makes the channel QR code for store A1; the image is saved.
    way = await running.transport.channel_qr("A1")
    assert Path(way["file"]).read_bytes().startswith(b"\x89PNG")
    assert fake.ways[way["config_id"]]["state"] == "A1"
    assert [c for c, _ in running.transport.channel_qrs()] == ["A1"]

    # A customer scans it; WeCom delivers the add event three times (its retries).
    fake.contacts["wmCUST1"] = "李雷"
    fake.welcome_codes["WELCOME-1"] = "wmCUST1"
    statuses = await running.callbacks.post(add_event(running, "wmCUST1", "A1", "WELCOME-1"), 3)
    assert statuses == [200, 200, 200]

    await until(lambda: fake.welcomed, what="the welcome")
    await until(lambda: len(fake.marked) >= 2, what="the channel tags")
    assert len(running.recorded("in.friend_request")) == 1  # the retries were no-ops
    assert fake.welcomed[0]["welcome_code"] == "WELCOME-1"
    assert "李雷" in fake.welcomed[0]["text"]["content"]
    tagged = {fake.tags[tag_id] for _, ext, tag_id in fake.marked if ext == "wmCUST1"}
    assert {"channel:A1", "store"} <= tagged
    assert running.app.book.channel("wmCUST1") == "A1"
    # And once only: a fourth delivery later changes nothing either.
    await running.callbacks.post(add_event(running, "wmCUST1", "A1", "WELCOME-1"))
    await asyncio.sleep(0.5)
    assert len(fake.welcomed) == 1
    assert fake.paths().count("externalcontact/send_welcome_msg") == 1


async def test_a_kf_message_is_answered_in_the_persona_voice_and_a_sixth_reply_is_held(
    running: Bot, fake: FakeWecom
) -> None:
    fake.contacts["wmKF1"] = "小王"
    fake.kf_customer_writes(KF, "wmKF1", "你们的茶多少钱呀")
    event = running.callbacks.event("kf_msg_or_event", Token="sync-token", OpenKfId=KF)
    assert await running.callbacks.post(event) == [200]
    await until(lambda: fake.kf_sent, what="the kf reply")
    reply = fake.kf_sent[0]
    assert (reply["touser"], reply["open_kfid"], reply["msgtype"]) == ("wmKF1", KF, "text")
    content = reply["text"]["content"]
    assert "小王" in content and "wmKF1" not in content  # called by the WeChat nickname
    sends = [r for r in running.recorded("out.sent") if r["kind"] == "send"]
    assert [r["key"] for r in sends] == ["auto_reply/price"]

    # Four more replies fit in the window; the sixth is held (not sent) and reported.
    outcomes = [
        await running.act(
            Action(ActionKind.SEND, to="wmKF1", text=f"第{n}条", cls=ActionClass.SERVICE)
        )
        for n in range(2, 7)
    ]
    assert outcomes == ["sent:"] * 4 + ["skipped:wecom:kf_window_full"]
    assert len(fake.kf_sent) == 5
    assert running.recorded("transport.window_closed")[-1]["contact_id"] == "wmKF1"

    # The customer writes again: the window opens again (the cursor went on, no re-reads).
    fake.kf_customer_writes(KF, "wmKF1", "好的谢谢")
    again = running.callbacks.event("kf_msg_or_event", Token="t2", OpenKfId=KF)
    await running.callbacks.post(again)
    await until(lambda: len(running.recorded("in.message")) == 2, what="the second message")
    outcome = await running.act(Action(ActionKind.SEND, to="wmKF1", text="不客气"))
    assert outcome == "sent:"
    assert "不客气" in [m["text"]["content"] for m in fake.kf_sent[5:]]
    assert len(running.recorded("in.message")) == 2  # each kf message once


async def test_a_kick_request_becomes_a_staff_alert(running: Bot, fake: FakeWecom) -> None:
    kick = Action(ActionKind.KICK, to="wrGROUP1", member_id="wmSPAM", cls=ActionClass.SERVICE)
    assert mode_of(running.transport, "kick") is Mode.NONE
    assert await running.act(kick) == "skipped:wecom:no_kick_api"
    await until(lambda: fake.app_messages, what="the staff alert")
    alert = fake.app_messages[0]
    assert alert["touser"] == STAFF and alert["agentid"] == 1000002
    assert "移出" in alert["text"]["content"] and "wmSPAM" in alert["text"]["content"]
    assert not any(p.endswith("del_member") for p in fake.paths())


async def test_a_token_expiring_mid_run_is_refreshed_once(running: Bot, fake: FakeWecom) -> None:
    assert await running.act(Action(ActionKind.SEND, to=STAFF, text="一")) == "sent:"
    fetches = fake.paths().count("gettoken")
    fake.expire_tokens()
    sends = [running.act(Action(ActionKind.SEND, to=STAFF, text=str(n))) for n in range(3)]
    assert await asyncio.gather(*sends) == ["sent:"] * 3
    assert fake.paths().count("gettoken") == fetches + 1
    assert len(fake.app_messages) == 4


async def test_frequency_errors_trip_the_breaker(running: Bot, fake: FakeWecom) -> None:
    fake.fail["message/send"] = [45009]
    outcome = asyncio.ensure_future(running.act(Action(ActionKind.SEND, to=STAFF, text="hi")))
    await until(lambda: running.app.outbox.breaker_open(), what="the breaker")
    assert running.recorded("out.deferred")[0]["reason"] == "throttled"
    # After the cool-down it goes out, once; the staff were told about the pause.
    assert await asyncio.wait_for(outcome, DEADLINE_S) == "sent:"
    await until(lambda: len(fake.app_messages) == 2, what="the breaker alert")
    texts = [m["text"]["content"] for m in fake.app_messages]
    assert texts.count("hi") == 1
    assert any("频繁" in text for text in texts)


async def test_forged_and_replayed_callbacks_are_refused(running: Bot, fake: FakeWecom) -> None:
    wrong = Callbacks(WecomCrypto("other-token", AES_KEY, CORP_ID), running.callbacks.url, CORP_ID)
    assert await wrong.post(add_event(running, "wmX", "A1", "W")) == [403]
    other_corp = Callbacks(WecomCrypto(TOKEN, AES_KEY, "wwOTHER"), running.callbacks.url, CORP_ID)
    assert await other_corp.post(add_event(running, "wmX", "A1", "W")) == [403]
    assert running.recorded("in.friend_request") == []
    assert running.transport.refused == 2


def test_the_transport_declares_its_modes() -> None:
    modes = WecomTransport.modes
    assert (modes[REPLY], modes[WELCOME], modes[TAG]) == (Mode.WINDOW, Mode.AUTO, Mode.AUTO)
    assert (modes["broadcast"], modes["post"], modes["kick"]) == (
        Mode.STAFF_CONFIRM,
        Mode.STAFF_CONFIRM,
        Mode.NONE,
    )
    assert mode_of(object(), "kick") is Mode.AUTO  # transports without modes: at once


@pytest.mark.parametrize("missing", ["WECOM_SECRET", "WECOM_AES_KEY", "WECOM_CORP_ID"])
def test_a_missing_secret_or_key_is_one_config_message(
    missing: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeWecom(CORP_ID, SECRET, port=1)
    env = wecom_env(tmp_path / "d", fake, 1)
    env.pop(missing)
    for key in list(__import__("os").environ):
        if key.startswith(("BOT_", "OUTBOX_", "WECOM_", "WECHATY_", "FRIENDS_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = bot_module.main(["--env-file", str(tmp_path / "none.env")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if " INFO " not in line]
    assert code == 2
    assert lines == [lines[0]] and lines[0].startswith(f"配置错误：配置项 {missing}"), err
    assert "Traceback" not in err and SECRET not in err


def test_a_malformed_aes_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    env = wecom_env(tmp_path, FakeWecom(CORP_ID, SECRET, port=1), 1)
    env["WECOM_AES_KEY"] = "short-but-secret"
    settings = Settings.from_mapping(env)
    with pytest.raises(Exception) as raised:
        WecomTransport(settings.wecom, data_dir=tmp_path, timezone=settings.bot.timezone)
    assert "WECOM_AES_KEY" in str(raised.value) and "short-but-secret" not in str(raised.value)


async def test_customer_group_joins_and_leaves_become_member_events(
    running: Bot, fake: FakeWecom
) -> None:
    members = [{"userid": STAFF, "type": 1}, {"userid": "wmA", "type": 2, "name": "韩梅梅"}]
    fake.groups["wrG1"] = {"chat_id": "wrG1", "name": "静安茶友群", "member_list": members}
    create = running.callbacks.event("change_external_chat", ChatId="wrG1", ChangeType="create")
    assert await running.callbacks.post(create) == [200]
    members.append({"userid": "wmB", "type": 2, "name": "李雷"})
    join = running.callbacks.event(
        "change_external_chat", ChatId="wrG1", ChangeType="update", UpdateDetail="add_member"
    )
    assert await running.callbacks.post(join, 3) == [200, 200, 200]
    await until(lambda: running.recorded("in.member_joined"), what="the join")
    members.remove(members[1])
    leave = running.callbacks.event(
        "change_external_chat", ChatId="wrG1", ChangeType="update", UpdateDetail="del_member"
    )
    assert await running.callbacks.post(leave) == [200]
    await until(lambda: running.recorded("in.member_left"), what="the leave")
    assert len(running.recorded("in.member_joined")) == 1  # the creation was no join
    assert running.recorded("in.member_joined")[0]["room_id"] == "wrG1"
    assert running.recorded("in.member_left")[0]["room_id"] == "wrG1"
    # No API posts into a customer group: a send there is refused, not attempted.
    assert await running.act(Action(ActionKind.SEND, to="wrG1", text="大家好")) == (
        "skipped:wecom:no_group_send_api"
    )


async def test_a_customer_who_deletes_the_staff_member_is_churned(
    running: Bot, fake: FakeWecom
) -> None:
    fake.welcome_codes["W2"] = "wmGONE"
    await running.callbacks.post(add_event(running, "wmGONE", "LIVE", "W2"))
    await until(lambda: fake.welcomed, what="the welcome")
    gone = running.callbacks.event(
        "change_external_contact",
        ChangeType="del_follow_user",
        UserID=STAFF,
        ExternalUserID="wmGONE",
    )
    assert await running.callbacks.post(gone, 2) == [200, 200]
    customer = running.app.book.get("wmGONE")
    assert customer is not None and customer.stage == "churned" and not customer.is_friend


async def test_the_operator_script_makes_and_lists_channel_qr_codes(
    tmp_path: Path,
    fake: FakeWecom,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from harness import load_script

    script = load_script("wecom_qr", "wecom_qr_script")
    data = tmp_path / "data"
    for key, value in wecom_env(data, fake, free_port()).items():
        monkeypatch.setenv(key, value)
    none = str(tmp_path / "none.env")
    made = await asyncio.to_thread(script.main, ["make", "A1", "--env-file", none])
    again = await asyncio.to_thread(script.main, ["make", "A1", "--env-file", none])
    assert (made, again) == (0, 0)
    assert fake.paths().count("externalcontact/add_contact_way") == 1  # kept, not made twice
    assert (data / "wecom" / "qr" / "A1.png").read_bytes().startswith(b"\x89PNG")
    capsys.readouterr()
    assert await asyncio.to_thread(script.main, ["list", "--env-file", none]) == 0
    out = capsys.readouterr().out
    assert out.startswith("A1\t") and "员工：zhangsan" in out
    bad = await asyncio.to_thread(script.main, ["make", "A 1", "--env-file", none])
    assert bad == 2 and "渠道码" in capsys.readouterr().err


async def test_a_broadcast_becomes_a_staff_confirm_task_whose_results_land_in_the_journal(
    running: Bot, fake: FakeWecom
) -> None:
    for n, ext in enumerate(["wmB1", "wmB2", "wmB3"]):
        fake.welcome_codes[f"WB{n}"] = ext
        await running.callbacks.post(add_event(running, ext, "POSTER", f"WB{n}"))
    await until(lambda: len(fake.welcomed) == 3, what="the welcomes")
    job = "broadcasts.autumn:2026-12-08"
    actions = [
        Action(
            ActionKind.SEND,
            to=ext,
            text="秋季新茶上市",
            cls=ActionClass.MARKETING,
            job=job,
            contact_id=ext,
        )
        for ext in ["wmB1", "wmB2", "wmB3"]
    ]
    running.app.outbox.enqueue_bulk(job, actions)
    await until(lambda: fake.templates, what="the 群发 task")
    ((msgid, task),) = fake.templates.items()
    assert sorted(task["external_userid"]) == ["wmB1", "wmB2", "wmB3"]  # one task, not three
    assert (task["chat_type"], task["sender"]) == ("single", STAFF)
    # The staff are told a task waits for them; nothing was sent yet.
    await until(
        lambda: any("群发助手" in m["text"]["content"] for m in fake.app_messages),
        what="the staff notice",
    )
    assert [t["msgid"] for t in running.transport.tasks.waiting()] == [msgid]
    summary = running.app.ledger.summary(job)
    assert summary.get("sent", 0) == 0

    fake.staff_confirms(msgid, {"wmB1": 1, "wmB2": 2, "wmB3": 3})
    ledger = running.app.ledger

    def rows() -> dict[str, tuple[str, str]]:
        return {r.recipient: (r.status.value, r.reason) for r in ledger.rows_of(job)}

    await until(lambda: running.transport.tasks.waiting() == [], what="the results")
    assert rows() == {
        "wmB1": ("sent", "staff_confirmed"),
        "wmB2": ("failed", "not_friend"),
        "wmB3": ("skipped", "over_quota"),
    }
    assert fake.paths().count("externalcontact/add_msg_template") == 1


async def test_tags_staff_give_in_wecom_reach_the_book_and_are_not_mirrored_back(
    running: Bot, fake: FakeWecom
) -> None:
    fake.welcome_codes["WT"] = "wmT"
    await running.callbacks.post(add_event(running, "wmT", "A2", "WT"))
    await until(lambda: fake.welcomed, what="the welcome")
    await until(lambda: len(fake.marked) >= 2, what="the channel tags")
    marked = len(fake.marked)
    fake.staff_tags["wmT"] = [
        {"group_name": "客户等级", "tag_name": "VIP", "tag_id": "etVIP", "type": 1},
        {"group_name": "客户等级", "tag_name": "重要 客户", "tag_id": "etX", "type": 1},
    ]
    edit = running.callbacks.event(
        "change_external_contact",
        ChangeType="edit_external_contact",
        UserID=STAFF,
        ExternalUserID="wmT",
    )
    assert await running.callbacks.post(edit) == [200]
    assert "VIP" in running.app.book.tags("wmT")
    assert "重要 客户" not in running.app.book.tags("wmT")  # not a valid pond tag: left out
    await asyncio.sleep(0.3)
    assert len(fake.marked) == marked  # nothing mirrored back to WeCom


async def test_a_moments_post_becomes_a_task_staff_publish(running: Bot, fake: FakeWecom) -> None:
    post = Action(ActionKind.POST, to="", text="冬至新品：桂花乌龙", cls=ActionClass.MARKETING)
    assert await running.act(post) == "skipped:wecom:staff_confirm"
    ((jobid, task),) = fake.moments.items()
    assert task["text"]["content"] == "冬至新品：桂花乌龙"
    assert task["visible_range"]["sender_list"]["user_list"] == [STAFF]
    await until(lambda: running.recorded("transport.moment_result"), what="the task result")
    assert running.recorded("transport.moment_result")[0]["moment_id"] == "mom" + jobid
    await until(
        lambda: any("客户朋友圈" in m["text"]["content"] for m in fake.app_messages),
        what="the staff notice",
    )


async def test_a_servicer_answering_in_the_client_pauses_the_bot_in_that_chat(
    running: Bot, fake: FakeWecom
) -> None:
    fake.kf_customer_writes(KF, "wmH", "你们的茶多少钱呀")
    servicer_writes(fake, KF, "wmH", "我来为您介绍")
    await running.callbacks.post(running.callbacks.event("kf_msg_or_event", OpenKfId=KF))
    await until(lambda: running.recorded("chat.takeover"), what="the takeover")
    assert running.recorded("chat.takeover")[0]["chat_id"] == "wmH"


# -- the plugins on the official route: what operators do and see ------------------------------
OPERATED = ["friends", "auto_reply", "broadcasts", "admin"]
_app_msg_ids = itertools.count(1)


async def staff_says(bot: Bot, text: str) -> str:
    """The operator writes to the bot's 自建应用 in the WeCom client; returns its answer."""
    seen = len(bot.fake.app_messages)
    xml = (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        f"<FromUserName><![CDATA[{STAFF}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
        f"<MsgId>{next(_app_msg_ids)}</MsgId><AgentID>1000002</AgentID></xml>"
    )
    assert await bot.callbacks.post(xml) == [200]

    def answers() -> list[str]:
        # The platform's own notices (a task was made) may arrive meanwhile: not answers.
        texts = [m["text"]["content"] for m in bot.fake.app_messages[seen:]]
        return [t for t in texts if not t.startswith(PLATFORM_NOTICE)]

    await until(answers, what=f"the answer to {text}")
    return "\n".join(answers())


PLATFORM_NOTICE = "【pond 提醒】企业微信有一项操作"


def campaign(folder: Path, name: str, segment: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(
        f'title = "秋季新茶"\ncopy = "broadcasts/copy_new_tea"\nsegment = "{segment}"\n'
        'start = "now"\n[vars]\nproduct = "桂花乌龙"\nprice = 68\n',
        encoding="utf-8",
    )


async def test_an_operators_broadcast_becomes_a_staff_task_and_its_results_reach_the_report(
    tmp_path: Path, fake: FakeWecom, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "campaigns"
    campaign(folder, "autumn", "channel:POSTER")
    env = {"BROADCASTS_CAMPAIGNS_DIR": str(folder)}
    async with booted(tmp_path, fake, caplog, OPERATED, **env) as bot:
        customers = ["wmB1", "wmB2", "wmB3"]
        for n, ext in enumerate(customers):
            fake.contacts[ext] = f"客户{n}"
            fake.welcome_codes[f"WB{n}"] = ext
            await bot.callbacks.post(add_event(bot, ext, "POSTER", f"WB{n}"))
        await until(lambda: len(fake.welcomed) == 3, what="the welcomes")
        assert bot.app.context("broadcasts").mode("broadcast") is Mode.STAFF_CONFIRM

        # The operator creates and starts the campaign from the WeCom client, as in chat.
        assert "autumn" in await staff_says(bot, "群发创建 autumn")
        preview = await staff_says(bot, "群发预览 autumn")
        assert "群发助手" in preview and "实际发送：3 人" in preview
        assert "的样例：\n客户" not in preview  # one text for all in a task: no names
        before = len(fake.app_messages)
        await staff_says(bot, "群发开始 autumn 3")
        await until(lambda: fake.templates, what="the 群发 task")
        ((msgid, task),) = fake.templates.items()
        assert sorted(task["external_userid"]) == customers and task["sender"] == STAFF
        assert "桂花乌龙" in task["text"]["content"]

        def notices() -> list[dict[str, Any]]:
            return [m for m in fake.app_messages[before:] if "群发助手" in m["text"]["content"]]

        await until(notices, what="the staff notice")
        assert "3 位客户" in notices()[0]["text"]["content"]

        # Waiting for staff: neither skipped nor failed, in the progress, the review list
        # and the report.
        status = await staff_says(bot, "群发状态 autumn")
        assert "等员工确认 3" in status and "跳过" not in status and "失败" not in status
        todo = await staff_says(bot, "待办")
        assert "企业微信任务待员工确认" in todo and "broadcasts.autumn ×3" in todo
        waiting = await staff_says(bot, "群发报告 autumn")
        assert "等员工在企业微信确认 3" in waiting and "跳过 0" in waiting
        daily = await staff_says(bot, f"日报 {bot.app.clock.now().date().isoformat()}")
        assert "交给员工在企业微信里确认 3 条" in daily and "没发出（跳过）" not in daily
        assert "企业微信任务待员工确认 1" in daily
        await bot.app.run_job("broadcasts.tick")
        assert "已完成" not in await staff_says(bot, "群发状态 autumn")  # not done yet

        # The staff member confirms; WeCom reports per customer: sent, not a friend, over quota.
        fake.staff_confirms(msgid, {"wmB1": 1, "wmB2": 2, "wmB3": 3})
        await until(lambda: bot.transport.tasks.waiting() == [], what="the results")
        rows = {
            r.recipient: (r.status.value, r.reason)
            for r in bot.app.ledger.rows_of("broadcasts.autumn")
        }
        assert rows == {
            "wmB1": ("sent", "staff_confirmed"),
            "wmB2": ("failed", "not_friend"),
            "wmB3": ("skipped", "over_quota"),
        }
        report = await staff_says(bot, "群发报告 autumn")
        assert "已发送 1" in report and "等员工" not in report
        assert "跳过 1（客户今天已收到过企业的群发（企业微信限制） 1）" in report
        assert "失败 1（已不是好友 1）" in report and "wmB2" in report
        assert "企业微信任务" not in await staff_says(bot, "待办")
        # The minute check now finishes the campaign and tells the operator.
        seen = len(fake.app_messages)
        await bot.app.run_job("broadcasts.tick", bot.app.clock.now() + timedelta(minutes=1))
        await until(lambda: len(fake.app_messages) > seen, what="the finished report")
        assert "【群发完成】" in fake.app_messages[-1]["text"]["content"]


GROUP_RULES = """
[rooms."wrG1"]
name = "静安茶友群"
role = "owner"
[rooms."wrG1".moderation]
enabled = true
links = true
warnings = 0
"""


async def test_a_moderation_kick_becomes_a_staff_alert_not_a_failed_action(
    tmp_path: Path, fake: FakeWecom, caplog: pytest.LogCaptureFixture
) -> None:
    rooms = tmp_path / "rooms.toml"
    rooms.write_text(GROUP_RULES, encoding="utf-8")
    env = {"GROUPS_ROOMS_FILE": str(rooms)}
    async with booted(tmp_path, fake, caplog, ["groups"], **env) as bot:
        members = [{"userid": STAFF, "type": 1}, {"userid": "wmSPAM", "type": 2, "name": "广告哥"}]
        fake.groups["wrG1"] = {"chat_id": "wrG1", "name": "静安茶友群", "member_list": members}
        create = bot.callbacks.event("change_external_chat", ChatId="wrG1", ChangeType="create")
        assert await bot.callbacks.post(create) == [200]
        assert bot.app.context("groups").mode("kick") is Mode.NONE
        # WeCom's callbacks carry no group chat text: the advert reaches the bot as a room
        # message at the transport boundary (as a message archive would deliver it).
        spam = Message(
            id="g1",
            sender=Contact(id="wmSPAM", name="广告哥"),
            text="好东西 http://spam.example.cn/x 快来",
            timestamp=bot.app.clock.now(),
            room=Room(id="wrG1", topic="静安茶友群"),
        )
        await bot.app.dispatch(spam)
        await until(lambda: fake.app_messages, what="the staff alert")
        alert = fake.app_messages[0]
        assert alert["touser"] == STAFF
        text = alert["text"]["content"]
        assert "广告哥" in text and "wmSPAM" in text and "企业微信没有移出群成员的接口" in text
        moderation = bot.recorded("groups.moderation")
        assert [(m["action"], m["detail"]) for m in moderation] == [
            ("notify_admins", "no_kick_api")
        ]
        # No kick was attempted, so nothing failed and no second (platform) alert went out.
        assert bot.recorded("out.skipped") == [] and bot.recorded("out.failed") == []
        assert not any(p.endswith("del_member") for p in fake.paths())
        await asyncio.sleep(0.3)
        assert len(fake.app_messages) == 1


async def test_a_calendar_post_becomes_a_moments_task_the_operator_sees_waiting(
    tmp_path: Path, fake: FakeWecom, caplog: pytest.LogCaptureFixture
) -> None:
    from plugins.calendar import scheduled_posts

    folder = tmp_path / "cal"
    folder.mkdir()
    shutil.copy(ROOT / "persona" / "calendar" / "holidays.toml", folder / "holidays.toml")
    tz = Settings.from_mapping(wecom_env(tmp_path, fake, 1)).bot.timezone
    due = datetime.now(tz) - timedelta(minutes=1)  # due a minute ago: inside the grace
    (folder / "calendar.toml").write_text(
        f'[[post]]\nid = "noon"\ntitle = "茶室日常"\nkey = "calendar/weekly_life"\n'
        f'cron = "{due.minute} {due.hour} * * *"\n',
        encoding="utf-8",
    )
    env = {"CALENDAR_FILE": str(folder / "calendar.toml")}
    async with booted(tmp_path, fake, caplog, ["calendar", "admin"], **env) as bot:
        ctx = bot.app.context("calendar")
        assert ctx.mode("post") is Mode.STAFF_CONFIRM
        await bot.app.run_job("calendar.tick")
        await until(lambda: fake.moments, what="the 朋友圈 task")
        ((jobid, task),) = fake.moments.items()
        assert task["visible_range"]["sender_list"]["user_list"] == [STAFF]
        assert "茶" in task["text"]["content"]
        await until(lambda: bot.recorded("transport.moment_result"), what="the task made")

        # Posted by the bot as a task: waiting for staff, listed in 待办, not handed by hand.
        def status() -> str:
            (post,) = scheduled_posts(ctx, due.date())
            return str(post["status"])

        assert status() == "staff_task"
        assert ctx.store.items("staff:") == []  # no by-hand handoff to the admins
        todo = await staff_says(bot, "待办")
        assert "企业微信任务待员工确认" in todo and "calendar:noon" in todo

        # A staff member publishes it in the client: the journal says sent, nothing waits.
        fake.staff_publishes("mom" + jobid, STAFF)
        await until(lambda: status() == "published", what="the publish result")
        (post,) = scheduled_posts(ctx, due.date())
        assert post["delivery"] == {"sent": 1}
        assert "企业微信任务" not in await staff_says(bot, "待办")
