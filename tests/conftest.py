from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

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
