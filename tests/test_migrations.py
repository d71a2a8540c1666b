"""Schema migrations (Alembic) on SQLite and PostgreSQL: the revisions build exactly the
schema of the code, a data dir of the release before migrations is refused at start with
the command to run, `scripts/migrate.py` upgrades it under a lock keeping every row."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from harness import ROOT, ChatSim, load_script

from plugins._analytics import keywords, orders
from plugins._friends import tables as friends_tables
from plugins._groups import db as groups_db
from plugins._referral import db as referral_db
from pond import customers, journal, ledger
from pond.store import DocStore, InstanceLock, SqlStore, Store, migrate
from pond.store.postgres import define_documents

cli: Any = load_script("migrate", "migrate_cli")

LEGACY = Path(__file__).parent / "data" / "release_before_migrations" / "pond.sql"
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


def table_rows(url: str) -> dict[str, list[list[tuple[str, str]]]]:
    """Every row of every pond table (but the version), sorted: 'all data kept'. The
    default account ('') is left out: rows from before accounts read the same after."""
    engine = sa.create_engine(url)
    try:
        md = sa.MetaData()
        md.reflect(engine)
        with engine.connect() as conn:
            return {
                name: sorted(
                    sorted(
                        (k, repr(v)) for k, v in row._mapping.items() if (k, v) != ("account", "")
                    )
                    for row in conn.execute(sa.select(table))
                )
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
        assert (before, applied) == (None, ["0001", "0002", "0003"])
        with engine.connect() as conn:
            assert migrate.version_of(conn) == (migrate.HEAD, True)
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, code_schema(engine.dialect.name))
        assert diffs == []
        assert migrate.upgrade(engine) == (migrate.HEAD, [])  # again: nothing to do
    finally:
        engine.dispose()


def legacy_data_dir(data_dir: Path, engine_url: str) -> str:
    """A data dir made by the release before migrations (dd9a4d5, the console with nine
    plugins: greetings, a price question, a friend request, a 退订, a group join; dumped
    to tests/data/release_before_migrations/pond.sql). For PostgreSQL the same rows go into
    the baseline schema, and a document sits in a file of the data dir, where that release
    kept them."""
    data_dir.mkdir(parents=True)
    sqlite_file = data_dir / "pond.sqlite3"
    with sqlite3.connect(sqlite_file) as conn:
        conn.executescript(LEGACY.read_text(encoding="utf-8"))
    conn.close()
    if not engine_url:
        return f"sqlite:///{sqlite_file}"
    engine = sa.create_engine(engine_url)
    migrate.upgrade(engine, target=migrate.BASELINE)
    source = sa.create_engine(f"sqlite:///{sqlite_file}")
    old, new = sa.MetaData(), sa.MetaData()
    old.reflect(source)
    new.reflect(engine)
    with source.connect() as read, engine.begin() as write:
        for name, table in old.tables.items():
            rows = [dict(row._mapping) for row in read.execute(sa.select(table))]
            if rows:
                write.execute(sa.insert(new.tables[name]), rows)
        write.exec_driver_sql(f"DROP TABLE {migrate.VERSION_TABLE}")
        # Rows copied with their ids leave PostgreSQL's sequences behind: move them on.
        for name, table in new.tables.items():
            for column in table.primary_key.columns:
                if not isinstance(column.type, sa.Integer):
                    continue
                write.execute(
                    sa.text(
                        "SELECT setval(pg_get_serial_sequence(:t, :c), "
                        f"(SELECT COALESCE(MAX({column.name}), 0) + 1 FROM {name}), false) "
                        "WHERE pg_get_serial_sequence(:t, :c) IS NOT NULL"
                    ),
                    {"t": name, "c": column.name},
                )
    source.dispose()
    engine.dispose()
    sqlite_file.unlink()
    DocStore(data_dir).db("calendar").table("posts").insert({"day": "12-12"})
    return engine_url


async def test_a_data_dir_of_the_release_before_migrations_upgrades_keeping_all_data(
    tmp_path: Path, engine_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = legacy_data_dir(tmp_path / "data", engine_url)
    rows = table_rows(url)
    assert rows["out_counters"] and rows["out_optout"] and rows["kv"] and rows["customers"]

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
    assert f"数据库结构已从 0001 升级到 {migrate.HEAD}（执行的迁移：0002、0003）" in out
    assert ("迁移前已备份到" in out) == (not engine_url)
    after = table_rows(url)
    if engine_url:
        assert "calendar" in out and len(after.pop("documents")) == 1
    assert after == rows  # every row kept (caps and opt-outs now of the default account)
    code, out = run_cli(monkeypatch, tmp_path, engine_url)
    assert code == 0 and "已是最新版本" in out

    env = {"DATABASE_URL": engine_url} if engine_url else {}
    sim = await ChatSim.create(tmp_path / "data", plugins=PLUGINS, env=env)
    try:
        assert sim.app.ledger.counts("2026-12-08") == {"send": 5}
        assert sim.app.book.is_opted_out("bob")
        assert sim.app.book.tags("alice") == frozenset({"asked:price"})
        assert (await sim.say("alice", "你好", msg_id="after")).keys == ["greeter/seen_before"]
        if engine_url:
            posts = sim.app.store.namespace("calendar").table("posts").all()
            assert posts == [{"day": "12-12"}]
    finally:
        await sim.close()


async def test_the_bot_refuses_to_start_on_a_database_behind_naming_the_command(
    tmp_path: Path,
) -> None:
    legacy_data_dir(tmp_path / "data", "")
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
