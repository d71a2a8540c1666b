"""Web admin security in headless Chromium: what a staff member's browser is refused, a POST
without the page's CSRF token, and a session cookie kept from before a login."""

# The fixtures imported from test_web_browser are redefined as test parameters on purpose.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from browser import requires_chromium
from harness import ChatSim
from test_web_browser import Browser, chromium, new_browser, setup_owner, sim  # noqa: F401
from webclient import PASSWORD, add_user, client, create_owner

from pond import Contact

pytestmark = requires_chromium

# Posts a form from inside the page, as a script on it could: the page's own CSRF field
# unless `csrf` overrides it (null drops the field). Answers the status code.
POST_FROM_PAGE = """
async ([action, fields, csrf]) => {
  const form = new FormData();
  const own = document.querySelector('input[name="csrf"]');
  if (csrf === undefined && own) form.append("csrf", own.value);
  else if (csrf !== null && csrf !== undefined) form.append("csrf", csrf);
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  const answer = await fetch(action, {method: "POST", body: new URLSearchParams(form),
                                      redirect: "manual"});
  return answer.status;
}
"""


async def post_from_page(b: Browser, action: str, fields: dict[str, str], **csrf: Any) -> int:
    status: int = await b.page.evaluate(POST_FROM_PAGE, [action, fields, *csrf.values()])
    return status


async def login_page(b: Browser, name: str) -> None:
    await b.open("/login")
    await b.fill_and_submit({"name": name, "password": PASSWORD}, "登录")


@pytest.fixture
async def owner(sim: ChatSim) -> AsyncIterator[httpx.AsyncClient]:
    """The owner (over HTTP) has a customer in the book and a staff member, 小林."""
    await sim.say(Contact(id="wxid_alice", name="王女士"), "你好")
    async with client() as web:
        await create_owner(web)
        await add_user(web, "小林", "staff")
        yield web


async def test_staff_in_the_browser_cannot_erase_a_customer_or_add_a_user(
    sim: ChatSim, chromium: Any, owner: httpx.AsyncClient
) -> None:
    b = await new_browser(chromium)
    await login_page(b, "小林")
    assert b.page.url.endswith("/account")
    await b.open("/customers/view?id=wxid_alice")
    assert "王女士" in await b.text() and "删除这位客户" not in await b.text()
    erase = {"id": "wxid_alice", "confirm": "wxid_alice"}
    assert await post_from_page(b, "/customers/delete", erase) == 403
    assert sim.app.book.get("wxid_alice") is not None
    # Creating or starting a broadcast is for operators and the owner.
    campaign = {"id": "autumn", "segment": "vip", "key": "broadcasts/new_tea"}
    assert await post_from_page(b, "/broadcasts/new", campaign) == 403
    assert await post_from_page(b, "/broadcasts/do", {"id": "autumn", "op": "start"}) == 403
    ran = [str(e["data"].get("command")) for e in sim.events("admin.command")]  # type: ignore[attr-defined]
    assert not [c for c in ran if c.startswith("broadcast")]
    # Adding a user is the owner's.
    joiner = {"name": "冒充", "role": "owner", "password": PASSWORD}
    assert await post_from_page(b, "/users/add", joiner) == 403
    assert "冒充" not in (await owner.get("/users")).text
    assert b.outside == []


async def test_a_post_without_or_with_a_wrong_csrf_token_changes_nothing(
    sim: ChatSim, chromium: Any
) -> None:
    await sim.say(Contact(id="wxid_alice", name="王女士"), "你好")
    b = await new_browser(chromium)
    await setup_owner(b)
    await b.open("/customers/view?id=wxid_alice")
    erase = {"id": "wxid_alice", "confirm": "wxid_alice"}
    assert await post_from_page(b, "/customers/delete", erase, csrf=None) == 403
    assert await post_from_page(b, "/customers/delete", erase, csrf="forged-token") == 403
    assert sim.app.book.get("wxid_alice") is not None
    tag = {"id": "wxid_alice", "tags": "vip", "op": "tag"}
    assert await post_from_page(b, "/customers/tag", tag, csrf="forged-token") == 403
    assert "vip" not in sim.app.book.tags("wxid_alice")
    # The same posts with the page's own token go through: the refusals were the token's.
    assert await post_from_page(b, "/customers/tag", tag) == 200
    assert "vip" in sim.app.book.tags("wxid_alice")


async def test_a_cookie_from_before_login_is_not_accepted_after(
    sim: ChatSim, chromium: Any, owner: httpx.AsyncClient
) -> None:
    b = await new_browser(chromium)
    await b.open("/login")
    before = {c["name"]: c for c in await b.page.context.cookies()}
    assert "pond_pre" in before  # the login form's pre-login token
    await b.fill_and_submit({"name": "小林", "password": PASSWORD}, "登录")
    after = {c["name"]: c for c in await b.page.context.cookies()}
    assert b.page.url.endswith("/account")
    assert after["pond_session"]["value"] != before["pond_pre"]["value"]
    # A second login in the same browser replaces the session: the first one is dead.
    await login_page(b, "小林")
    renewed = {c["name"]: c for c in await b.page.context.cookies()}
    assert renewed["pond_session"]["value"] != after["pond_session"]["value"]
    stale = (before["pond_pre"]["value"], after["pond_session"]["value"])
    for value in stale:
        other = await new_browser(chromium)
        cookie = {**after["pond_session"], "value": value}
        await other.page.context.add_cookies([cookie])
        await other.open("/inbox")
        assert other.page.url.endswith("/login"), value
    fresh = await new_browser(chromium)
    await fresh.page.context.add_cookies([renewed["pond_session"]])
    await fresh.open("/inbox")
    assert fresh.page.url.endswith("/inbox")  # the current session still works
