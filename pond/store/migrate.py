"""Schema versions: Alembic revisions (pond/store/migrations/versions), checked at each start.

- An empty database: the code creates its tables (``create_all``) and stamps it ``HEAD``.
- A database at ``HEAD``: nothing to do.
- A database behind the code (an older revision, or tables without a version: made by the
  release before migrations, whose schema is revision ``BASELINE``) is refused with
  ``SchemaBehind``, which names the command; ``upgrade()`` (``python3 scripts/migrate.py``)
  brings it to ``HEAD`` under a lock, keeping every row.
- A database ahead of the code (a newer release migrated it) is refused: this code would
  write rows the new schema does not expect.

Locks: on PostgreSQL an advisory lock serializes the start check of several workers (two
empty-database starts cannot both create tables) and the migration; on SQLite one process
owns the data dir (pond/store/lock.py) and the migration takes that lock itself.

This module imports nothing else from ``pond`` (like the rest of pond.store).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .errors import StoreError

__all__ = [
    "BASELINE",
    "COMMAND",
    "HEAD",
    "SchemaAhead",
    "SchemaBehind",
    "check",
    "stamp",
    "start_lock",
    "upgrade",
    "version_of",
]

BASELINE = "0001"
HEAD = "0003"
COMMAND = "python3 scripts/migrate.py"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"
# Tables every pond database has had since the first release: their presence without a
# version table means "made by the release before migrations".
_LEGACY_MARKERS = frozenset({"events", "kv", "seen_messages"})
_LOCK_KEY = 0x706F6E64  # "pond": one advisory lock id for schema work


class SchemaBehind(StoreError):
    """The database's schema is older than the code's."""


class SchemaAhead(StoreError):
    """The database was migrated by a newer release."""


def _where(engine: sa.Engine) -> str:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"数据库文件 {url.database}"
    return f"数据库 {url.render_as_string(hide_password=True)}"


def version_of(conn: sa.Connection) -> tuple[str | None, bool]:
    """(the stamped revision or None, whether pond tables exist)."""
    names = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE not in names:
        return None, bool(names & _LEGACY_MARKERS)
    version = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
    return (str(version) if version is not None else None), True


@contextlib.contextmanager
def start_lock(engine: sa.Engine) -> Iterator[None]:
    """Hold the schema lock for a start check (PostgreSQL; a no-op on SQLite)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({_LOCK_KEY})")
        conn.commit()
        try:
            yield
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_LOCK_KEY})")
            conn.commit()


def check(engine: sa.Engine) -> bool:
    """At start: True for an empty database (create its tables, then ``stamp`` it); False
    at HEAD; ``SchemaBehind``/``SchemaAhead`` otherwise."""
    try:
        with engine.connect() as conn:
            version, has_tables = version_of(conn)
    except sa.exc.DatabaseError:
        if engine.dialect.name == "sqlite":
            return False  # not a database: create_all reports it as StoreCorrupt
        raise
    if version == HEAD:
        return False
    if version is None and not has_tables:
        return True
    if version is not None and version not in _known():
        raise SchemaAhead(
            f"{_where(engine)} 的结构版本是 {version}，比这个版本的 pond 新（它认识到 {HEAD}）。"
            "请升级 pond 后再启动。"
        )
    raise SchemaBehind(
        f"{_where(engine)} 的结构版本是 {version or BASELINE + '（迁移之前的版本）'}，"
        f"这个版本的 pond 需要 {HEAD}。请先停止所有机器人进程并备份，然后运行 {COMMAND} "
        "升级数据库结构（数据都会保留），再启动。"
    )


def stamp(engine: sa.Engine, revision: str = HEAD) -> None:
    """Record ``revision`` (a database whose tables the code has just created), in the
    table Alembic keeps (without importing it: this runs at every first start)."""
    table = sa.Table(
        VERSION_TABLE,
        sa.MetaData(),
        sa.Column("version_num", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    with engine.begin() as conn:
        table.create(conn, checkfirst=True)
        conn.execute(sa.delete(table))
        conn.execute(sa.insert(table).values(version_num=revision))


@functools.cache
def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def _known() -> set[str]:
    return {rev.revision for rev in _script().walk_revisions()}


def upgrade(engine: sa.Engine, target: str = HEAD) -> tuple[str | None, list[str]]:
    """Bring the database to HEAD (tests: `target`) in one transaction under the schema lock.

    Returns (the version before, the revisions applied). A database from the release
    before migrations is stamped BASELINE first; an empty one gets every revision."""
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = _script()
    applied: list[str] = []
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        version, has_tables = version_of(conn)
        before = version if version is not None else (BASELINE if has_tables else None)
        if version is not None and version not in _known():
            raise SchemaAhead(
                f"{_where(engine)} 的结构版本是 {version}，比这个版本的 pond 新。请升级 pond。"
            )

        def steps(rev: Any, context: Any) -> Any:
            revs = script._upgrade_revs(target, rev)
            applied.extend(step.revision.revision for step in revs)
            return revs

        with EnvironmentContext(config, script, fn=steps, destination_rev=target) as env:
            env.configure(connection=conn)
            with env.begin_transaction():
                if version is None and has_tables:
                    env.get_context().stamp(script, BASELINE)
                env.run_migrations()
    return before, applied
