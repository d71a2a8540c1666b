"""The 企业微信 API client against the fake WeCom server on loopback: the token cache and its
single refresh, and the errcodes mapped into the transport error contract."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from wecom_server import FakeWecom, serving

from pond import Settings, StartupError
from pond.transports.wecom import WecomTransport
from pond.transports.wecom_api import WecomApi, WecomApiError, WecomPermissionError

CORP_ID, SECRET = "ww1234567890abcdef", "the-secret"
SEND = "/cgi-bin/message/send"
BODY = {"touser": "zhangsan", "msgtype": "text", "agentid": 1, "text": {"content": "hi"}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeWecom]:
    async with serving(FakeWecom(CORP_ID, SECRET)) as server:
        yield server


@pytest.fixture
async def api(fake: FakeWecom) -> AsyncIterator[WecomApi]:
    client = WecomApi(CORP_ID, SECRET, base=f"http://127.0.0.1:{fake.port}", timeout_s=5)
    yield client
    await client.aclose()


async def test_ten_concurrent_calls_fetch_one_token(api: WecomApi, fake: FakeWecom) -> None:
    await asyncio.gather(*(api.call(SEND, BODY) for _ in range(10)))
    assert fake.paths().count("gettoken") == 1
    assert len(fake.app_messages) == 10


async def test_a_refused_token_is_refreshed_and_the_call_repeated_once(
    api: WecomApi, fake: FakeWecom
) -> None:
    await api.call(SEND, BODY)
    fake.expire_tokens()
    await asyncio.gather(*(api.call(SEND, BODY) for _ in range(3)))
    assert fake.paths().count("gettoken") == 2  # one refresh for the three callers
    assert len(fake.app_messages) == 4
    # A token refused twice in a row is not chased forever.
    fake.fail["message/send"] = [40014, 40014]
    with pytest.raises(WecomApiError) as raised:
        await api.call(SEND, BODY)
    assert raised.value.code == 40014
    assert fake.paths().count("gettoken") == 3


@pytest.mark.parametrize("code", [45009, 45033])
async def test_frequency_errcodes_are_throttled(api: WecomApi, fake: FakeWecom, code: int) -> None:
    fake.fail["message/send"] = [code]
    with pytest.raises(WecomApiError) as raised:
        await api.call(SEND, BODY)
    assert raised.value.throttled and not raised.value.retryable


@pytest.mark.parametrize("code", [60011, 48002])
async def test_permission_errcodes_say_what_to_change_in_chinese(
    api: WecomApi, fake: FakeWecom, code: int
) -> None:
    fake.fail["externalcontact/get"] = [code]
    with pytest.raises(WecomPermissionError) as raised:
        await api.call("/cgi-bin/externalcontact/get", method="GET")
    assert "管理后台" in raised.value.hint
    assert not (raised.value.retryable or raised.value.throttled or raised.value.offline)


async def test_a_welcome_already_sent_is_done(api: WecomApi, fake: FakeWecom) -> None:
    fake.fail["externalcontact/send_welcome_msg"] = [41051]
    answer = await api.call(
        "/cgi-bin/externalcontact/send_welcome_msg",
        {"welcome_code": "W", "text": {"content": "hi"}},
        done=frozenset({41051}),
    )
    assert answer["errcode"] == 41051


async def test_an_unreachable_api_is_offline_nothing_was_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = WecomApi(CORP_ID, SECRET, base=f"http://127.0.0.1:{port}", timeout_s=2)
    try:
        with pytest.raises(Exception) as raised:
            await client.call(SEND, BODY)
        assert getattr(raised.value, "offline", False)
        assert SECRET not in str(raised.value)
    finally:
        await client.aclose()


async def test_wrong_credentials_stop_the_start_with_a_chinese_message(
    fake: FakeWecom, tmp_path: Path
) -> None:
    settings = Settings.from_mapping(
        {
            "WECOM_CORP_ID": CORP_ID,
            "WECOM_SECRET": "not-the-secret",
            "WECOM_AGENT_ID": "1000002",
            "WECOM_TOKEN": "t",
            "WECOM_AES_KEY": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            "WECOM_API_BASE": f"http://127.0.0.1:{fake.port}",
        }
    )
    transport = WecomTransport(
        settings.wecom, data_dir=tmp_path, timezone=settings.bot.timezone, serve=False
    )

    async def ignore(event: object) -> None:
        return None

    try:
        with pytest.raises(StartupError) as raised:
            await transport.start(ignore)
        assert "WECOM_SECRET" in str(raised.value) and "not-the-secret" not in str(raised.value)
    finally:
        await transport.stop()
