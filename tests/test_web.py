"""Web admin (运营后台): security and pages against the real server in the bot process.

Each test boots the bot (auto_reply, admin, web) on a free port and talks HTTP to it like a
browser: the owner is created through the one-time setup link, people log in, forms carry
their CSRF token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from harness import ChatSim
from webclient import (
    boot,
    client,
    create_owner,
    setup_url,
)

from plugins._web import server


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await boot(tmp_path)
    yield chat
    await chat.close()


@pytest.fixture
async def owner(sim: ChatSim) -> AsyncIterator[httpx.AsyncClient]:
    async with client() as web:
        done = await create_owner(web)
        assert done.status_code == 303 and done.headers["location"] == "/account"
        yield web


async def test_first_start_prints_a_one_time_setup_link_that_makes_the_owner(
    sim: ChatSim,
) -> None:
    link = setup_url()
    assert link.startswith("http://127.0.0.1:")
    async with client() as web:
        done = await create_owner(web)
        assert done.status_code == 303
        page = await web.get("/account")
        assert page.status_code == 200 and "店主" in page.text and "账号" in page.text
    async with client() as other:
        again = await other.get(link.removeprefix(server.running().url))  # type: ignore[union-attr]
        assert again.status_code == 410 and "已经创建过" in again.text
