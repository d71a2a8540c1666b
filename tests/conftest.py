from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from harness import ChatSim, sims  # noqa: E402, F401  (sims: a fixture for every test)
from pg import engine_url, pg_server, pg_url  # noqa: E402, F401  (PostgreSQL fixtures)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ChatSim]:
    chat = await ChatSim.create(tmp_path / "data", plugins=["greeter"])
    yield chat
    await chat.close()


@pytest.fixture
async def owner(sim: ChatSim) -> AsyncIterator[Any]:
    """The web admin's owner, created through the setup link and logged in, on the test
    module's own `sim` (a bot with the web plugin): an httpx client."""
    from webclient import client, create_owner

    async with client() as web:
        done = await create_owner(web)
        assert done.status_code == 303 and done.headers["location"] == "/account"
        yield web
