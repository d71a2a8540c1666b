"""Shared by the web admin's tests: a bot with the web plugin on a free port, and a client
that fills the forms the way a browser does (hidden CSRF fields included)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from harness import ChatSim

from plugins._web import server

PASSWORD = "correct horse battery"
PLUGINS = ("auto_reply", "admin", "friends", "web")


async def boot(tmp_path: Path, **env: str) -> ChatSim:
    return await ChatSim.create(
        tmp_path / "data", plugins=list(PLUGINS), env={"WEB_PORT": "0", **env}
    )


def base_url() -> str:
    """Where the server listens (tests talk to it directly, not through a proxy)."""
    running = server.running()
    assert running is not None
    return running.local


def setup_url() -> str:
    running = server.running()
    assert running is not None and running.setup_line
    found = re.search(r"(https?://\S+/setup/[\w-]+)", running.setup_line)
    assert found, running.setup_line
    return found.group(1)


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url(), follow_redirects=False, timeout=10)


def hidden(html: str, name: str = "csrf") -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name} field"
    return found.group(1)


async def submit(web: httpx.AsyncClient, page: str, action: str, **fields: Any) -> httpx.Response:
    """Open `page`, then post its form to `action` with its CSRF token and `fields`."""
    shown = await web.get(page)
    assert shown.status_code == 200, (page, shown.status_code)
    return await web.post(action, data={"csrf": hidden(shown.text), **fields})


async def create_owner(web: httpx.AsyncClient, name: str = "店主") -> httpx.Response:
    running = server.running()
    assert running is not None
    link = setup_url().removeprefix(running.url)
    return await submit(web, link, link, name=name, password=PASSWORD, confirm=PASSWORD)


async def login(web: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    return await submit(web, "/login", "/login", name=name, password=password)


async def add_user(web: httpx.AsyncClient, name: str, role: str) -> None:
    done = await submit(web, "/users", "/users/add", name=name, role=role, password=PASSWORD)
    assert done.headers["location"] == "/users?m=added"
