"""Schema migrations (Alembic) on SQLite and PostgreSQL: the revisions build exactly the
schema of the code, a data dir of the release before migrations is refused at start with
the command to run, `scripts/migrate.py` upgrades it under a lock keeping every row."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from harness import ROOT, ChatSim, load_script

from plugins._friends import tables as friends_tables
from plugins._groups import db as groups_db
from plugins._referral import db as referral_db
from pond import customers, journal, ledger
from pond.analytics import keywords, orders
from pond.store import DocStore, InstanceLock, SqlStore, Store, migrate
from pond.store.postgres import define_documents

cli: Any = load_script("migrate", "migrate_cli")

PLUGINS = ["greeter", "auto_reply", "friends", "groups", "referral", "broadcasts", "admin"]


def code_schema(dialect: str) -> sa.MetaData:
    """Every table the kernel and the plugins define."""
    sql = SqlStore("sqlite://")
    sql.engine.dispose()
    md = sql.metadata
    for define in (
        journal.define_tables,
        ledger.define_tables,
        customers.define_tables,
        keywords.define_table,
        orders.define_table,
        friends_tables.define,
        groups_db.define_tables,
        referral_db.define_tables,
    ):
        define(md)
    if dialect == "postgresql":
        define_documents(md)
    return md


def url_of(engine_url: str, data_dir: Path) -> str:
    return engine_url or f"sqlite:///{data_dir / 'pond.sqlite3'}"


def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every pond table (but the version), sorted: 'all data kept'."""
    engine = sa.create_engine(url)
    try:
        md = sa.MetaData()
        md.reflect(engine)
        with engine.connect() as conn:
            return {
                name: sorted(tuple(map(repr, row)) for row in conn.execute(sa.select(table)))
                for name, table in md.tables.items()
                if name != migrate.VERSION_TABLE
            }
    finally:
        engine.dispose()


def drop_version(url: str) -> None:
    """What the release before migrations left: the same tables, no version."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {migrate.VERSION_TABLE}")
    engine.dispose()


def drop_documents(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE documents")
    engine.dispose()


def run_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, engine_url: str, *args: str):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", engine_url)
    out = io.StringIO()
    code = cli.run(
        ["--data-dir", str(tmp_path / "data"), "--env-file", str(tmp_path / "none.env"), *args],
        out=out,
    )
    return code, out.getvalue()


def test_head_is_the_newest_revision() -> None:
    script = migrate._script()
    assert script.get_current_head() == migrate.HEAD
    assert [r.revision for r in script.walk_revisions()][-1] == migrate.BASELINE


def test_the_revisions_build_exactly_the_schema_of_the_code(
    tmp_path: Path, engine_url: str
) -> None:
    url = url_of(engine_url, tmp_path)
    engine = sa.create_engine(url)
    try:
        before, applied = migrate.upgrade(engine)
        assert (before, applied) == (None, ["0001", "0002"])
        with engine.connect() as conn:
            assert migrate.version_of(conn) == (migrate.HEAD, True)
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, code_schema(engine.dialect.name))
        assert diffs == []
        assert migrate.upgrade(engine) == (migrate.HEAD, [])  # again: nothing to do
    finally:
        engine.dispose()


async def test_a_data_dir_of_the_release_before_migrations_upgrades_keeping_all_data(
    tmp_path: Path, engine_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"DATABASE_URL": engine_url} if engine_url else {}
    sim = await ChatSim.create(tmp_path / "data", plugins=PLUGINS, env=env)
    await sim.say("alice", "你好")
    await sim.say("alice", "价格")
    await sim.say("bob", "退订")
    await sim.close()
    url = url_of(engine_url, tmp_path / "data")
    drop_version(url)
    if engine_url:  # that release kept a PostgreSQL store's documents in files
        drop_documents(url)
        DocStore(tmp_path / "data").db("calendar").table("posts").insert({"day": "12-12"})
    rows = table_rows(url)
    assert rows["inbox"] and rows["kv"] and rows["customers"] and rows["events"]

    with pytest.raises(migrate.SchemaBehind) as refused:
        Store(tmp_path / "data", engine_url or None)
    assert str(refused.value).endswith(
        f"这个版本的 pond 需要 {migrate.HEAD}。请先停止所有机器人进程并备份，然后运行 "
        "python3 scripts/migrate.py 升级数据库结构（数据都会保留），再启动。"
    )
    assert "迁移之前的版本" in str(refused.value)

    code, out = run_cli(monkeypatch, tmp_path, engine_url, "--check")
    assert code == 1 and "需要运行 python3 scripts/migrate.py" in out
    code, out = run_cli(monkeypatch, tmp_path, engine_url)
    assert code == 0, out
    assert f"数据库结构已从 0001 升级到 {migrate.HEAD}（执行的迁移：0002）" in out
    assert ("迁移前已备份到" in out) == (not engine_url)
    after = table_rows(url)
    if engine_url:
        assert "calendar" in out and len(after.pop("documents")) == 1
    assert after == rows  # every row kept
    code, out = run_cli(monkeypatch, tmp_path, engine_url)
    assert code == 0 and "已是最新版本" in out

    sim = await ChatSim.create(tmp_path / "data", plugins=PLUGINS, env=env)
    try:
        assert (await sim.say("alice", "你好", msg_id="after")).keys == ["greeter/seen_before"]
        assert (await sim.say("alice", "你好", msg_id="m1")).keys == []  # still deduplicated
        assert sim.app.book.is_opted_out("bob")
        if engine_url:
            posts = sim.app.store.namespace("calendar").table("posts").all()
            assert posts == [{"day": "12-12"}]
    finally:
        await sim.close()


async def test_the_bot_refuses_to_start_on_a_database_behind_naming_the_command(
    tmp_path: Path,
) -> None:
    sim = await ChatSim.create(tmp_path / "data", plugins=["greeter"])
    await sim.say("alice", "你好")
    await sim.close()
    drop_version(url_of("", tmp_path / "data"))
    env = {**os.environ, "POND_NO_VENV": "1", "BOT_LOG_FILE": str(tmp_path / "pond.log")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--check", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"数据文件错误：数据库文件 {tmp_path / 'data' / 'pond.sqlite3'} 的结构版本是 0001"
        f"（迁移之前的版本），这个版本的 pond 需要 {migrate.HEAD}。请先停止所有机器人进程并备份，"
        "然后运行 python3 scripts/migrate.py 升级数据库结构（数据都会保留），再启动。"
    )


def test_a_database_ahead_of_the_code_is_refused(tmp_path: Path, engine_url: str) -> None:
    with Store(tmp_path / "data", engine_url or None) as store:
        migrate.stamp(store.sql.engine, "9999")
    with pytest.raises(migrate.SchemaAhead, match="比这个版本的 pond 新"):
        Store(tmp_path / "data", engine_url or None)


def test_sqlite_migration_is_refused_while_a_bot_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store(tmp_path / "data").close()
    drop_version(url_of("", tmp_path / "data"))
    with InstanceLock(tmp_path / "data"):
        assert cli.main(["--data-dir", str(tmp_path / "data")]) == 1
    with sa.create_engine(url_of("", tmp_path / "data")).connect() as conn:
        assert migrate.version_of(conn) == (None, True)  # untouched


def test_an_empty_postgresql_database_gets_every_table_from_the_command(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = run_cli(monkeypatch, tmp_path, pg_url)
    assert code == 0, out
    assert "从 空数据库 升级到" in out
    with Store(tmp_path / "data", pg_url) as store:
        names = set(sa.inspect(store.sql.engine).get_table_names())
    assert set(code_schema("postgresql").tables) <= names
