"""PostgreSQL for the tests: a real server, a fresh database per test (no mocks).

`python3 scripts/test.py` starts the server and exports POND_TEST_PG_URL; when pytest runs
alone, the first test that asks starts one for the session (scripts/_pg.py). Without
PostgreSQL binaries the tests that need it are skipped with the reason, except under CI
(CI set), where that is a failure.

`engine_url` runs a test on both engines: "" means the default SQLite file of the data dir.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from _pg import PgUnavailable, TempServer

ENV = "POND_TEST_PG_URL"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a database on a running server, with the right to CREATE DATABASE."""
    url = os.environ.get(ENV)
    if url:
        yield url
        return
    server = TempServer()
    try:
        url = server.start()
    except (PgUnavailable, OSError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {error}")
        pytest.skip(f"no PostgreSQL server could be started ({error}); run scripts/test.py")
    try:
        yield url
    finally:
        server.stop()


def _admin(server_url: str) -> sa.Engine:
    return sa.create_engine(server_url, isolation_level="AUTOCOMMIT")


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A new, empty database for one test, dropped after it."""
    name = "t_" + uuid.uuid4().hex[:16]
    admin = _admin(pg_server)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_url(request: pytest.FixtureRequest) -> str:
    """Empty (SQLite in the data dir) or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    return str(request.getfixturevalue("pg_url"))
