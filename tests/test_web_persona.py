"""Web admin 人设 editor: trial render through the bot's own persona loader, a broken
template refused with file:line and not saved, saving = hot reload, and nothing outside
the persona folder can be read or written (../, absolute paths, symlinks)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from harness import ROOT, ChatSim
from webclient import (
    add_user,
    boot,
    client,
    hidden,
    login,
)

GOOD = """{# 示例变量
name = "小美"
#}
{{ name }}，欢迎来到网页改过的茶铺！
---
{{ name }}，今天想喝点什么？"""
BROKEN = """{# 示例变量
name = "小美"
#}
{{ name }}，欢迎！
{% if name %}没有结束的判断"""


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    shutil.copytree(ROOT / "persona", tmp_path / "persona")
    chat = await boot(tmp_path, BOT_PERSONA_DIR=str(tmp_path / "persona"))
    yield chat
    await chat.close()


async def edit(web: httpx.AsyncClient, action: str, key: str, source: str) -> httpx.Response:
    page = await web.get("/persona")
    return await web.post(action, data={"csrf": hidden(page.text), "key": key, "source": source})


async def test_templates_are_listed_by_plugin_and_searchable(owner: httpx.AsyncClient) -> None:
    page = await owner.get("/persona")
    assert 'href="/persona/edit?key=greeter/hello"' in page.text
    found = await owner.get("/persona", params={"q": "茶友群"})
    assert "greeter/hello" in found.text and "core/optout_confirm" not in found.text
    shown = await owner.get("/persona/edit", params={"key": "greeter/hello"})
    assert shown.status_code == 200 and "voice.call(name)" in shown.text


async def test_trial_render_shows_every_variant_and_saving_hot_reloads(
    sim: ChatSim, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    tried = await edit(owner, "/persona/try", "greeter/hello", GOOD)
    assert tried.status_code == 200
    assert "小美，欢迎来到网页改过的茶铺！" in tried.text and "小美，今天想喝点什么？" in tried.text
    file = tmp_path / "persona" / "greeter" / "hello.j2"
    assert "网页改过" not in file.read_text(encoding="utf-8")  # a trial saves nothing

    saved = await edit(owner, "/persona/save", "greeter/hello", GOOD)
    assert saved.status_code == 200 and "已保存" in saved.text
    assert file.read_text(encoding="utf-8") == GOOD
    texts = {sim.app.persona.render("greeter/hello", chat_id="c1", name="阿花").text}
    texts.add(sim.app.persona.render("greeter/hello", chat_id="c1", name="阿花").text)
    assert texts == {"阿花，欢迎来到网页改过的茶铺！", "阿花，今天想喝点什么？"}


async def test_a_broken_template_is_refused_with_its_line_and_not_saved(
    sim: ChatSim, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    file = tmp_path / "persona" / "greeter" / "hello.j2"
    before = file.read_text(encoding="utf-8")
    refused = await edit(owner, "/persona/save", "greeter/hello", BROKEN)
    assert refused.status_code == 422 and "模板有错，没有保存" in refused.text
    assert "persona/greeter/hello.j2:5" in refused.text
    assert file.read_text(encoding="utf-8") == before
    assert "欢迎！" not in sim.app.persona.render("greeter/hello", chat_id="c", name="x").text
    audits = [e["data"] for e in sim.app.store.sql.events(kind="web.audit")]  # type: ignore[index]
    assert not any(a.get("action") == "persona_saved" for a in audits)  # type: ignore[union-attr]


async def test_nothing_outside_the_persona_folder_can_be_read_or_written(
    sim: ChatSim, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.j2"
    outside.write_text("outside", encoding="utf-8")
    persona = tmp_path / "persona"
    (persona / "greeter" / "evil.j2").symlink_to(outside)
    (persona / "linked").symlink_to(tmp_path)
    keys = [
        "../secret",
        "../../etc/passwd",
        "greeter/../../secret",
        str(outside),
        "/etc/passwd",
        "greeter/evil",
        "linked/secret",
        "_layers/vip/greeter/hello",
        "greeter/hello.j2",
    ]
    for key in keys:
        shown = await owner.get("/persona/edit", params={"key": key})
        assert shown.status_code == 404 and "outside" not in shown.text, key
        for action in ("/persona/try", "/persona/save"):
            written = await edit(owner, action, key, "pwned")
            assert written.status_code == 404, (key, action)
    assert outside.read_text(encoding="utf-8") == "outside"
    assert not (tmp_path / "etc").exists()
    listed = await owner.get("/persona")
    assert "greeter/evil" not in listed.text and "linked/" not in listed.text


async def test_staff_may_read_templates_but_not_change_them(
    sim: ChatSim, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    await add_user(owner, "小林", "staff")
    async with client() as staff:
        await login(staff, "小林")
        shown = await staff.get("/persona/edit", params={"key": "greeter/hello"})
        assert shown.status_code == 200 and "只有店主和运营可以修改文案" in shown.text
        refused = await edit(staff, "/persona/save", "greeter/hello", GOOD)
        assert refused.status_code == 403
    assert "网页改过" not in (tmp_path / "persona" / "greeter" / "hello.j2").read_text("utf-8")
