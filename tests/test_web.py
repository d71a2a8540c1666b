"""Web admin (运营后台): security and pages against the real server in the bot process.

Each test boots the bot (auto_reply, admin, web) on a free port and talks HTTP to it like a
browser: the owner is created through the one-time setup link, people log in, forms carry
their CSRF token."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import ROOT, ChatSim
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from webclient import (
    PASSWORD,
    PLUGINS,
    add_user,
    base_url,
    boot,
    client,
    create_owner,
    hidden,
    login,
    setup_url,
    submit,
)

from plugins._web import server
from plugins._web.auth import Auth
from plugins._web.pages import routes
from pond import Contact, StartupError


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await boot(tmp_path)
    yield chat
    await chat.close()


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


async def test_the_setup_link_expires_and_a_wrong_one_is_refused(sim: ChatSim) -> None:
    link = setup_url().removeprefix(server.running().url)  # type: ignore[union-attr]
    async with client() as web:
        wrong = await web.get("/setup/not-the-token")
        assert wrong.status_code == 404 and "链接不对" in wrong.text
        sim.clock.advance(61 * 60)  # WEB_SETUP_TTL_MIN is 60
        late = await web.get(link)
        assert late.status_code == 410 and "已过期" in late.text


PUBLIC = {"/", "/login", "/setup/{token}"}


def guarded_routes() -> list[tuple[str, str]]:
    found = []
    for route in routes():
        path = getattr(route, "path", "")
        if path in PUBLIC:
            continue
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, path))
    return found


async def test_every_page_without_a_session_redirects_to_login_and_posts_get_401(
    sim: ChatSim,
) -> None:
    assert len(guarded_routes()) >= 10
    async with client() as web:
        for method, path in guarded_routes():
            answer = await web.request(method, path, data={"csrf": "x"})
            if method == "GET":
                assert answer.status_code == 303, path
                assert answer.headers["location"] == "/login", path
            else:
                assert answer.status_code == 401, path


async def test_a_post_without_the_csrf_token_is_refused(owner: httpx.AsyncClient) -> None:
    for method, path in guarded_routes():
        if method != "POST":
            continue
        missing = await owner.post(path, data={"chat": "alice", "text": "hi"})
        assert missing.status_code == 403 and "表单已失效" in missing.text, path
        forged = await owner.post(path, data={"csrf": "forged", "chat": "alice"})
        assert forged.status_code == 403, path
    assert (await owner.get("/account")).status_code == 200  # still signed in: not a logout
    async with client() as stranger:  # the login form has its own (pre-login) token
        assert (await stranger.post("/login", data={"name": "店主"})).status_code == 403


async def test_wrong_passwords_lock_the_name_even_for_the_right_password(
    sim: ChatSim, owner: httpx.AsyncClient
) -> None:
    async with client() as web:
        for _ in range(4):
            wrong = await login(web, "店主", "not the password")
            assert wrong.status_code == 401 and "名字或密码不对" in wrong.text
        fifth = await login(web, "店主", "not the password")
        assert fifth.status_code == 429 and "已暂时锁定" in fifth.text
        right = await login(web, "店主")
        assert right.status_code == 429 and "15 分钟后再试" in right.text
        sim.clock.advance(16 * 60)
        after = await login(web, "店主")
        assert after.status_code == 303 and after.headers["location"] == "/account"
    audits = [e["action"] for e in audit(sim)]
    assert audits.count("login_failed") == 5 and "login_locked" in audits


async def test_a_cookie_from_before_login_is_not_accepted_after(sim: ChatSim) -> None:
    async with client() as web:
        await create_owner(web)
        first = web.cookies["pond_session"]
        await login(web, "店主")  # a second login in the same browser: a new session id
        second = web.cookies["pond_session"]
        assert first != second
    async with client() as old:
        old.cookies.set("pond_session", first)
        assert (await old.get("/account")).status_code == 303
    async with client() as pre:
        shown = await pre.get("/login")
        pre.cookies.set("pond_session", pre.cookies["pond_pre"])  # the pre-login token
        assert shown.status_code == 200
        assert (await pre.get("/account")).status_code == 303
    async with client() as current:
        current.cookies.set("pond_session", second)
        assert (await current.get("/account")).status_code == 200
        out = await submit(current, "/account", "/logout")
        assert out.headers["location"] == "/login?m=out"
        current.cookies.set("pond_session", second)
        assert (await current.get("/account")).status_code == 303  # logged out for good


async def test_roles_staff_cannot_manage_users_viewer_cannot_reply(
    sim: ChatSim, owner: httpx.AsyncClient
) -> None:
    await add_user(owner, "小林", "staff")
    await add_user(owner, "老王", "viewer")
    await sim.say("alice", "转人工")
    async with client() as staff:
        await login(staff, "小林")
        assert (await staff.get("/users")).status_code == 403
        page = await staff.get("/inbox")
        refused = await staff.post(
            "/users/add",
            data={"csrf": hidden(page.text), "name": "x", "role": "owner", "password": PASSWORD},
        )
        assert refused.status_code == 403 and "没有这个权限" in refused.text
    async with client() as viewer:
        await login(viewer, "老王")
        page = await viewer.get("/inbox")
        assert page.status_code == 200 and "发送" not in page.text
        refused = await viewer.post(
            "/inbox/reply", data={"csrf": hidden(page.text), "chat": "alice", "text": "好的"}
        )
        assert refused.status_code == 403
    assert [u.name for u in server_auth().users()] == ["店主", "小林", "老王"]


def server_auth() -> Auth:
    running = server.running()
    assert running is not None
    auth: Auth = running.app.state.web.auth
    return auth


def audit(sim: ChatSim) -> list[dict[str, Any]]:
    found = []
    for row in sim.app.store.sql.events(kind="web.audit"):
        data = row["data"]
        assert isinstance(data, dict)
        found.append(data)
    return found


def performed(sim: ChatSim) -> list[tuple[str, str, str, str]]:
    return [
        (p.action.to, p.action.key, p.action.cls.value, p.action.text)
        for p in sim.transport.performed
    ]


async def test_a_hand_off_reply_goes_out_through_the_outbox_and_pauses_the_chat(
    sim: ChatSim, owner: httpx.AsyncClient
) -> None:
    said = await sim.say("alice", "转人工")
    assert said.keys[0] == "auto_reply/handoff"
    page = await owner.get("/inbox")
    assert "#1 alice" in page.text and "等待回复" in page.text
    before = len(sim.transport.performed)
    sent = await owner.post(
        "/inbox/reply",
        data={"csrf": hidden(page.text), "chat": "alice", "text": "您好，我是店员，马上帮您查"},
    )
    assert sent.headers["location"] == "/inbox?m=sent"
    await sim.driver.settle()
    assert performed(sim)[before:] == [
        ("alice", "web/staff_reply", "reply", "您好，我是店员，马上帮您查")
    ]
    # The same road as staff typing on the phone: the kernel's takeover pause, and the
    # ticket is answered.
    assert sim.app.pauses.reason("alice") == "takeover"
    shown = await owner.get("/inbox")
    assert "已有人回复" in shown.text and "机器人暂停中" in shown.text
    assert (await sim.say("alice", "好的谢谢")).keys == []  # the bot keeps quiet
    [reply] = [e for e in audit(sim) if e["action"] == "reply"]
    assert reply == {"user": "1", "action": "reply", "length": 13}  # chat id: a column

    ended = await submit(owner, "/inbox", "/inbox/end", chat="alice")
    assert ended.headers["location"] == "/inbox?m=ended"
    await sim.driver.settle()
    assert sim.app.pauses.reason("alice") is None
    assert "现在没有等待人工的客户" in (await owner.get("/inbox")).text
    # The handback command ran, audited like any operator command, by the web user's id.
    commands = sim.app.store.sql.events(kind="admin.command")
    assert [(c["contact_id"], c["data"]["command"]) for c in commands] == [  # type: ignore[index]
        ("web:1", "handback")
    ]
    assert (await sim.say("alice", "在吗")).keys != []  # the bot answers again


async def test_a_reply_to_a_closed_or_unknown_ticket_sends_nothing(
    sim: ChatSim, owner: httpx.AsyncClient
) -> None:
    before = len(sim.transport.performed)
    gone = await submit(owner, "/inbox", "/inbox/reply", chat="bob", text="你好")
    assert gone.headers["location"] == "/inbox?m=gone"
    await sim.say("alice", "转人工")
    empty = await submit(owner, "/inbox", "/inbox/reply", chat="alice", text="   ")
    assert empty.headers["location"] == "/inbox?m=empty"
    long = await submit(owner, "/inbox", "/inbox/reply", chat="alice", text="长" * 1001)
    assert long.headers["location"] == "/inbox?m=long"
    await sim.driver.settle()
    assert [k for _, k, _, _ in performed(sim)[before:]] == [
        "auto_reply/handoff",
        "auto_reply/handoff_staff",
    ]


SCRIPT = "<script>alert(1)</script>"
PAGES = ("/account", "/inbox", "/settings", "/users", "/customers?q=e", "/customers/view?id=evil")


async def test_a_customer_called_script_is_shown_escaped(
    sim: ChatSim, owner: httpx.AsyncClient
) -> None:
    await sim.say(Contact(id="evil", name=SCRIPT), "转人工")
    page = await owner.get("/inbox")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    for path in PAGES:
        assert SCRIPT not in (await owner.get(path)).text, path


async def test_no_page_refers_to_anything_outside_the_server(
    sim: ChatSim, owner: httpx.AsyncClient
) -> None:
    await sim.say("alice", "转人工")
    htmls = [(await owner.get(path)).text for path in PAGES]
    async with client() as stranger:
        htmls.append((await stranger.get("/login")).text)
        htmls.append((await stranger.get("/setup/wrong")).text)
    for html in htmls:
        links = re.findall(r'(?:src|href|action)="([^"]*)"', html)
        assert links and all(link.startswith("/") and not link.startswith("//") for link in links)
        # A setting whose value is an address (WECOM_API_BASE) is shown as plain text in a
        # table cell: that is not a reference the browser follows; everything else is.
        outside_cells = re.sub(r"<td>[^<]*</td>", "", html)
        assert "http://" not in outside_cells and "https://" not in outside_cells
        assert "<script>" not in html and " on" + "click=" not in html  # no inline script
    css = (await owner.get("/static/app.css")).text
    assert "url(" not in css and "@import" not in css


async def test_security_headers_and_cookie_flags(sim: ChatSim) -> None:
    async with client() as web:
        shown = await web.get("/login")
        headers = shown.headers
        assert headers["content-security-policy"].startswith(
            "default-src 'self'; frame-ancestors 'none'"
        )
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert "server" not in headers
        pre = headers["set-cookie"].lower()
        assert "httponly" in pre and "samesite=strict" in pre
        done = await create_owner(web)
        session = [c for c in done.headers.get_list("set-cookie") if "pond_session=" in c]
        assert session and "httponly" in session[0].lower()
        assert "samesite=strict" in session[0].lower() and "secure" not in session[0].lower()


async def test_cookies_are_secure_behind_an_https_public_url(tmp_path: Path) -> None:
    chat = await boot(tmp_path, WEB_PUBLIC_URL="https://admin.example.com")
    try:
        async with httpx.AsyncClient(base_url=base_url(), follow_redirects=False) as web:
            shown = await web.get("/login")
            assert "secure" in shown.headers["set-cookie"].lower()
        assert setup_url().startswith("https://admin.example.com/setup/")
    finally:
        await chat.close()


async def test_the_access_log_keeps_tokens_query_strings_and_text_out(
    sim: ChatSim, owner: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pond.web.access")
    await sim.say("alice", "转人工")
    async with client() as web:
        await web.get("/setup/secret-token-value?x=1")
    await submit(owner, "/inbox?m=phone-13800000000", "/inbox/reply", chat="alice", text="秘密内容")
    lines = [r.getMessage() for r in caplog.records if r.name == "pond.web.access"]
    assert "GET /setup/{token} 410" in " | ".join(lines)
    assert any(line.startswith("POST /inbox/reply 303") for line in lines)
    joined = "\n".join(lines)
    for secret in ("secret-token-value", "13800000000", "秘密内容", "?", "alice"):
        assert secret not in joined


async def test_the_account_page_shows_the_login_qr_and_a_new_one_after_a_logout(
    sim: ChatSim, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    page = await owner.get("/account")
    assert "在线" in page.text and "发消息" in page.text and 'src="/static/poll.js"' in page.text
    png = tmp_path / "qr.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfirst")
    report = sim.transport.status_listener
    report("logout", {"name": "小美"})
    report("scan", {"status": "waiting", "qr_png": str(png)})
    live = await owner.get("/account/live")
    assert "需要扫码登录" in live.text
    first = re.search(r'src="(/account/qr.png\?v=\d+)"', live.text)
    assert first and (await owner.get(first.group(1))).content.endswith(b"first")
    png.write_bytes(b"\x89PNG\r\n\x1a\nsecond")
    report("scan", {"status": "waiting", "qr_png": str(png)})
    again = re.search(r'src="(/account/qr.png\?v=\d+)"', (await owner.get("/account/live")).text)
    assert again and again.group(1) != first.group(1)
    assert (await owner.get(again.group(1))).content.endswith(b"second")
    report("login", {"name": "小美"})
    after = await owner.get("/account/live")
    assert "在线" in after.text and "qr.png" not in after.text
    assert (await owner.get("/account/qr.png")).status_code == 404


async def test_settings_show_effective_values_with_secrets_masked(tmp_path: Path) -> None:
    chat = await boot(tmp_path, WECHATY_PUPPET_SERVICE_TOKEN="puppet-token-12345")
    try:
        async with client() as web:
            await create_owner(web)
            page = await web.get("/settings")
        assert "WECHATY_PUPPET_SERVICE_TOKEN" in page.text and "******" in page.text
        assert "puppet-token-12345" not in page.text
        assert "OUTBOX_CAP_SEND" in page.text and "WEB_PORT" in page.text
        assert "AUTO_REPLY_HANDOFF_PAUSE_MIN" in page.text
    finally:
        await chat.close()


async def test_other_front_ends_mount_their_own_apps_next_to_the_pages(
    sim: ChatSim,
) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("success")

    server.mount("/wecom-test", Starlette(routes=[Route("/callback", hello)]))
    async with client() as web:
        answer = await web.get("/wecom-test/callback?msg_signature=abc")
        assert answer.status_code == 200 and answer.text == "success"
        assert answer.headers["x-frame-options"] == "DENY"


async def test_customers_search_tag_and_delete_by_role(
    sim: ChatSim, owner: httpx.AsyncClient
) -> None:
    await sim.say(Contact(id="wxid_alice", name="王女士"), "你好")
    await add_user(owner, "小林", "staff")
    await add_user(owner, "小周", "operator")
    found = await owner.get("/customers", params={"q": "王"})
    assert "找到 1 位" in found.text and 'href="/customers/view?id=wxid_alice"' in found.text
    async with client() as staff:
        await login(staff, "小林")
        page = await staff.get("/customers/view", params={"id": "wxid_alice"})
        assert "打标签" in page.text and "删除这位客户" not in page.text
        tagged = await staff.post(
            "/customers/tag",
            data={"csrf": hidden(page.text), "id": "wxid_alice", "tags": "vip，老客", "op": "tag"},
        )
        assert tagged.status_code == 200
        assert sim.app.book.tags("wxid_alice") >= {"vip", "老客"}
        refused = await staff.post(
            "/customers/delete",
            data={"csrf": hidden(page.text), "id": "wxid_alice", "confirm": "wxid_alice"},
        )
        assert refused.status_code == 403
    assert sim.app.book.get("wxid_alice") is not None
    async with client() as operator:
        await login(operator, "小周")
        page = await operator.get("/customers/view", params={"id": "wxid_alice"})
        assert "删除这位客户" in page.text
        typo = await operator.post(
            "/customers/delete",
            data={"csrf": hidden(page.text), "id": "wxid_alice", "confirm": "wxid_alic"},
        )
        assert sim.app.book.get("wxid_alice") is not None and "王女士" in typo.text
        erased = await operator.post(
            "/customers/delete",
            data={"csrf": hidden(page.text), "id": "wxid_alice", "confirm": "wxid_alice"},
        )
        assert erased.status_code == 200 and "已删除这位客户的数据" in erased.text
    assert sim.app.book.get("wxid_alice") is None
    commands = [
        (c["contact_id"], c["data"]["command"])  # type: ignore[index]
        for c in sim.app.store.sql.events(kind="admin.command")
    ]
    assert ("web:2", "tag") in commands and ("web:3", "delete_contact") in commands


async def test_a_busy_port_stops_start_up_with_a_chinese_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError) as stopped:
            await boot(tmp_path, WEB_PORT=str(port))
    assert f"运营后台无法监听 127.0.0.1:{port}" in str(stopped.value)
    assert "WEB_PORT" in str(stopped.value)
    assert server.running() is None


def test_check_serves_nothing_while_the_bot_may_hold_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {
            **os.environ,
            "POND_NO_VENV": "1",
            "BOT_PLUGINS": ",".join(PLUGINS),
            "WEB_PORT": str(taken.getsockname()[1]),
            "BOT_DATA_DIR": str(tmp_path / "data"),
        }
        env.pop("WECHATY_PUPPET_SERVICE_TOKEN", None)
        done = subprocess.run(
            [sys.executable, "bot.py", "--check", "--env-file", str(tmp_path / "none.env")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    assert "检查通过" in done.stdout
    assert "运营后台" not in done.stdout + done.stderr
