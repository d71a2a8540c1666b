"""待处理 in the web admin beyond hand-offs: friend requests accepted or rejected, a post
handed to staff copied, its pictures downloaded and marked 已发, each through the command the
plugin declares for its review item (the same as the operator's chat and the CLI)."""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from harness import ROOT, ChatSim
from webclient import (
    add_user,
    client,
    create_owner,
    hidden,
    login,
)

from pond import Action, ActionClass, ActionKind, RowStatus

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
CALENDAR = """
[[post]]
id = "daily"
title = "每日茶室"
key = "calendar/weekly_life"
cron = "0 9 * * *"
images = ["media/a.png", "media/b.png"]
"""
MON_0800 = datetime(2026, 11, 23, 8, 0)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    folder = tmp_path / "cal"
    (folder / "media").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        (folder / "media" / name).write_bytes(PNG)
    (folder / "calendar.toml").write_text(CALENDAR, encoding="utf-8")
    shutil.copy(ROOT / "persona" / "calendar" / "holidays.toml", folder / "holidays.toml")
    chat = await ChatSim.create(
        tmp_path / "data",
        plugins=["auto_reply", "admin", "friends", "calendar", "web"],
        env={
            "WEB_PORT": "0",
            "CALENDAR_FILE": str(folder / "calendar.toml"),
            "CALENDAR_FALLBACK": "staff",
            "OUTBOX_QUIET_HOURS": "off",
            "OUTBOX_TYPING_MAX_S": "0",
        },
        start=MON_0800,
    )
    yield chat
    await chat.close()


async def settle(
    web: httpx.AsyncClient, kind: str, op: str, seen_by: httpx.AsyncClient | None = None
) -> httpx.Response:
    """Press a button of the first item of `kind` on the 待处理 page (as `seen_by` shows it,
    for someone whose page has no such button)."""
    page = await (seen_by or web).get("/inbox")
    assert page.status_code == 200
    found = re.search(
        r'name="plugin" value="([^"]*)"><input type="hidden" name="kind" value="'
        + kind
        + r'"><input type="hidden" name="ref" value="([^"]*)"',
        page.text,
    )
    assert found, f"no {kind} on the page"
    csrf = hidden((await web.get("/inbox")).text)
    data = {"csrf": csrf, "plugin": found.group(1), "kind": kind, "op": op}
    data["ref"] = html.unescape(found.group(2))
    return await web.post("/inbox/settle", data=data)


async def test_friend_requests_are_accepted_and_rejected_from_the_page(
    sim: ChatSim, owner: httpx.AsyncClient
) -> None:
    await sim.friend_request("erin", "你好呀")
    await sim.friend_request("frank", "hi")
    page = await owner.get("/inbox")
    assert "好友申请（2）" in page.text and "erin" in page.text and "frank" in page.text
    assert "你好呀" in page.text  # the listing the chat command shows, with the hello

    accepted = await settle(owner, "friend_request", "do")
    assert accepted.status_code == 200 and "erin" in accepted.text
    rejected = await settle(owner, "friend_request", "reject")
    assert rejected.status_code == 200 and "frank" in rejected.text
    page = await owner.get("/inbox")
    assert "好友申请（0）" in page.text
    [gone] = sim.events("friends.review_rejected")
    assert gone["contact_id"] == "frank", gone
    commands = [e["data"]["command"] for e in sim.events("admin.command")]
    assert "accept" in commands and "reject" in commands
    await sim.advance(24 * 3600)  # the bot's own round accepts what was approved
    accepted_friends = [
        p.action.to for p in sim.transport.performed if p.action.kind.value == "accept_friend"
    ]
    assert accepted_friends == ["erin"]


async def test_a_post_handed_to_staff_is_copied_downloaded_and_marked_posted(
    sim: ChatSim, owner: httpx.AsyncClient
) -> None:
    await sim.advance(90 * 60)  # 09:30: the 09:00 post went to the admins by hand
    await add_user(owner, "小林", "staff")
    await add_user(owner, "老王", "viewer")
    async with client() as viewer:
        await login(viewer, "老王")
        page = await viewer.get("/inbox")
        assert "每日茶室" in page.text and "已发</button>" not in page.text
        refused = await settle(viewer, "staff_post", "do", seen_by=owner)
        assert refused.status_code == 403
    async with client() as staff:
        await login(staff, "小林")
        page = await staff.get("/inbox")
        assert "待人工发朋友圈（1）" in page.text and "每日茶室" in page.text
        assert "文案" in page.text and "a.png" in page.text
        picture = await staff.get("/inbox/picture", params={"post": "daily", "n": "1"})
        assert picture.status_code == 200 and picture.content == PNG
        assert 'filename="b.png"' in picture.headers["content-disposition"]
        for bad in ({"post": "daily", "n": "2"}, {"post": "../x", "n": "0"}, {"post": "daily"}):
            assert (await staff.get("/inbox/picture", params=bad)).status_code == 404
        done = await settle(staff, "staff_post", "do")
        assert done.status_code == 200 and "已处理" in done.text
        assert "待人工发朋友圈（0）" in (await staff.get("/inbox")).text
    [confirmed] = [e["data"] for e in sim.events("calendar.confirmed")]
    assert confirmed["post_id"] == "daily"


async def test_unknown_deliveries_are_settled_like_the_operators_chat_does(
    sim: ChatSim,
) -> None:
    actions = [
        Action(
            ActionKind.SEND,
            to=name,
            cls=ActionClass.MARKETING,
            text="新茶上市",
            key="calendar/weekly_life",
            plugin="calendar",
            job="spring",
            contact_id=name,
        )
        for name in ("alice", "bob", "carol")
    ]
    sim.app.outbox.enqueue_bulk("spring", actions)
    for name in ("alice", "bob", "carol"):  # a kill -9 mid-send: "unknown" at the next start
        sim.app.ledger.mark("spring", name, RowStatus.SENDING, 0.0)
    await sim.restart()
    async with client() as owner:
        await create_owner(owner)
        page = await owner.get("/inbox")
        assert "送达未确认（3）" in page.text and "spring" in page.text
        before = len(sim.transport.performed)
        resent = await settle(owner, "unknown_delivery", "resend")
        assert resent.status_code == 200 and "已处理" in resent.text
        await sim.driver.settle()
        again = [p.action.to for p in sim.transport.performed[before:] if p.action.job == "spring"]
        assert again == ["alice"]
        await settle(owner, "unknown_delivery", "sent")
        await settle(owner, "unknown_delivery", "skip")
        assert "送达未确认（0）" in (await owner.get("/inbox")).text
    rows = {r.recipient: r.status for r in sim.app.ledger.rows_of("spring")}
    assert rows == {"alice": RowStatus.SENT, "bob": RowStatus.SENT, "carol": RowStatus.SKIPPED}
