"""群发 in the web admin: an operator creates a campaign from a segment and a copy key,
dry-runs it, confirms it with the typed count, watches it and reads the report; every step
is the broadcasts plugin's own command (the chat's and the CLI's). Staff and viewers only
watch."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from harness import ChatSim
from webclient import (
    PLUGINS,
    add_user,
    client,
    create_owner,
    hidden,
    login,
)

from plugins._web.broadcasts import campaign_file, parse_vars


async def boot_with_broadcasts(tmp_path: Path, **env: str) -> ChatSim:
    return await ChatSim.create(
        tmp_path / "data",
        plugins=[*PLUGINS, "broadcasts"],
        env={"WEB_PORT": "0", "BROADCASTS_CAMPAIGNS_DIR": str(tmp_path / "c"), **env},
    )


def vips(sim: ChatSim, n: int) -> list[str]:
    now = sim.clock.now()
    ids = [f"c{i:03d}" for i in range(n)]
    for cid in ids:
        sim.app.book.upsert(cid, now, name=f"客户{cid}")
        sim.app.book.tag(cid, ("vip",), now)
    return ids


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await boot_with_broadcasts(tmp_path)
    yield chat
    await chat.close()


NEW = {
    "id": "tea",
    "title": "新茶上新",
    "segment": "vip",
    "copy": "broadcasts/copy_new_tea",
    "vars": "product = 桂花乌龙\nprice = 68",
}


async def post(web: httpx.AsyncClient, page: str, action: str, **fields: str) -> httpx.Response:
    shown = await web.get(page)
    assert shown.status_code == 200, (page, shown.status_code)
    return await web.post(action, data={"csrf": hidden(shown.text), **fields})


def delivered(sim: ChatSim) -> list[str]:
    return [p.action.to for p in sim.transport.performed if p.action.job == "broadcasts.tea"]


def eligible(html: str) -> int:
    found = re.search(r"实际发送：(\d+) 人", html)
    assert found, html
    return int(found.group(1))


async def test_create_dry_run_confirm_watch_and_report(
    sim: ChatSim, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    vips(sim, 3)
    created = await post(owner, "/broadcasts", "/broadcasts/new", **NEW)
    assert created.status_code == 200 and "tea" in created.text
    assert sim.events("broadcasts.created") or "创建" in created.text
    assert (tmp_path / "c" / "tea.toml").is_file()
    assert delivered(sim) == []  # creating sends nothing

    dry = await post(owner, "/broadcasts/view?id=tea", "/broadcasts/do", id="tea", op="dry_run")
    assert "群发预览" in dry.text and eligible(dry.text) == 3
    assert "客户c00" in dry.text  # the sample, rendered for a real recipient
    assert "scripts/broadcast.py" not in dry.text  # the page has its own confirm form
    assert delivered(sim) == []

    wrong = await post(
        owner, "/broadcasts/view?id=tea", "/broadcasts/do", id="tea", op="start", count="2"
    )
    assert "不一致" in wrong.text and delivered(sim) == []

    started = await post(
        owner, "/broadcasts/view?id=tea", "/broadcasts/do", id="tea", op="start", count="3"
    )
    assert started.status_code == 200 and "tea" in started.text
    await sim.advance(1800)
    sent = [p.action for p in sim.transport.performed if p.action.job == "broadcasts.tea"]
    assert sorted(a.to for a in sent) == ["c000", "c001", "c002"]
    assert all("桂花乌龙" in a.text for a in sent)

    live = await owner.get("/broadcasts/live", params={"id": "tea"})
    assert live.status_code == 200 and "已完成" in live.text and "3/3" in live.text
    assert '<progress max="100" value="100">' in live.text
    report = await owner.get("/broadcasts/report", params={"id": "tea"})
    assert "群发报告" in report.text and "已发送 3" in report.text
    audit = [e["data"] for e in sim.events("web.audit")]
    assert {"broadcast_new", "broadcast_dry_run", "broadcast_start"} <= {
        str(a["action"]) for a in audit
    }


async def test_pause_resume_and_cancel_are_the_commands(
    tmp_path: Path,
) -> None:
    sim = await boot_with_broadcasts(tmp_path, OUTBOX_CAP_BROADCAST="2")
    try:
        vips(sim, 5)
        async with client() as owner:
            await create_owner(owner)
            await post(owner, "/broadcasts", "/broadcasts/new", **NEW)
            await post(
                owner, "/broadcasts/view?id=tea", "/broadcasts/do", id="tea", op="start", count="5"
            )
            await sim.advance(600)
            paused = await post(
                owner, "/broadcasts/view?id=tea", "/broadcasts/do", id="tea", op="pause"
            )
            assert "暂停" in paused.text
            assert sim.app.ledger.summary("broadcasts.tea") == {"sent": 2, "held": 3}
            await sim.advance(3 * 3600)  # within the session's lifetime
            assert len(delivered(sim)) == 2  # held rows never go out
            resumed = await post(
                owner, "/broadcasts/view?id=tea", "/broadcasts/do", id="tea", op="resume"
            )
            assert "继续" in resumed.text or "发送中" in resumed.text
            cancelled = await post(
                owner, "/broadcasts/view?id=tea", "/broadcasts/do", id="tea", op="cancel"
            )
            assert "取消" in cancelled.text
            await sim.advance(3 * 3600)
            report = await owner.get("/broadcasts/report", params={"id": "tea"})
            assert "已取消" in report.text
    finally:
        await sim.close()


async def test_staff_and_viewer_cannot_create_or_start_a_broadcast(
    sim: ChatSim, owner: httpx.AsyncClient
) -> None:
    vips(sim, 2)
    await post(owner, "/broadcasts", "/broadcasts/new", **NEW)
    await add_user(owner, "小林", "staff")
    await add_user(owner, "老王", "viewer")
    for name in ("小林", "老王"):
        async with client() as web:
            await login(web, name)
            page = await web.get("/broadcasts/view", params={"id": "tea"})
            assert page.status_code == 200 and "确认并开始群发" not in page.text
            token = hidden(page.text)
            start = await web.post(
                "/broadcasts/do", data={"csrf": token, "id": "tea", "op": "start", "count": "2"}
            )
            assert start.status_code == 403
            made = await web.post("/broadcasts/new", data={"csrf": token, **NEW, "id": "tea2"})
            assert made.status_code == 403
            assert (await web.get("/broadcasts/live", params={"id": "tea"})).status_code == 200
    assert delivered(sim) == []
    assert {e["data"]["route"] for e in sim.events("web.denied")} >= {
        "/broadcasts/do",
        "/broadcasts/new",
    }


async def test_a_refused_campaign_is_not_kept_and_names_are_never_paths(
    sim: ChatSim, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    bad = await post(owner, "/broadcasts", "/broadcasts/new", **{**NEW, "segment": "vip and and"})
    assert bad.status_code == 422 and "分群表达式有误" in bad.text
    assert not (tmp_path / "c" / "tea.toml").exists()
    assert 'value="vip and and"' in bad.text  # kept to fix
    for name in ("../etc/passwd", "/etc/passwd.toml", "Tea", "a/b"):
        made = await post(owner, "/broadcasts", "/broadcasts/new", **{**NEW, "id": name})
        assert made.status_code == 400 and "活动名只能用小写字母" in made.text
        did = await post(owner, "/broadcasts", "/broadcasts/do", id=name, op="create")
        assert did.status_code == 404
    assert [p.name for p in (tmp_path / "c").iterdir()] == []
    not_copy = await post(
        owner, "/broadcasts", "/broadcasts/new", **{**NEW, "copy": "auto_reply/handoff_staff"}
    )
    assert not_copy.status_code == 400 and "请从列表里选一个群发文案" in not_copy.text


def test_the_campaign_file_is_toml_the_plugin_reads() -> None:
    import tomllib

    variables = parse_vars('product = 桂花"乌龙"\nprice = 68')
    assert variables == {"product": '桂花"乌龙"', "price": 68}
    text = campaign_file('新"茶"\n上新', "broadcasts/copy_new_tea", "vip", variables)
    assert tomllib.loads(text) == {
        "title": '新"茶"\n上新',
        "copy": "broadcasts/copy_new_tea",
        "segment": "vip",
        "start": "now",
        "vars": {"product": '桂花"乌龙"', "price": 68},
    }
    assert parse_vars("not a pair") is None and parse_vars("a b = 1") is None
