"""Alembic's migrations, run in a process of their own (`Database.migrate` starts it): SQLAlchemy
and Alembic are imported here and nowhere a request is served.

    python -c "from registry.core.metadata.migrate import main; main()" REVISION  < URL
    python -m registry.core.metadata.migrate --dump-sqlite > structure.sqlite.sql

The first brings the database whose URL arrives on stdin (it may hold a password, which a
command line would show to every user of the machine) to REVISION. The second builds the
newest schema in a scratch SQLite database with the migrations and prints it as the script
`Database.migrate` runs on an empty SQLite database.

PostgreSQL: replicas take turns through an advisory lock. SQLite: the whole migration is one
BEGIN IMMEDIATE transaction, so a second process waits and then finds nothing to do.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .database import SCHEMA_VERSION, MetadataUrlError
from .sqlite import BUSY_TIMEOUT_MS, PRAGMAS

MIGRATIONS = str(Path(__file__).with_name("migrations"))
MIGRATION_LOCK = 7_320_114_519  # any fixed 64-bit number: PostgreSQL's advisory lock for migrations


def engine_url(url: str) -> str:
    """`postgresql://…` or `sqlite:///path` with SQLAlchemy's async driver named."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise MetadataUrlError(f"metadata.url {url!r} is not a database URL") from None
    backend = parsed.get_backend_name()
    driver = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}.get(backend)
    if driver is None:
        raise MetadataUrlError(f"metadata.url {url!r}: Dockyard keeps its metadata in PostgreSQL or SQLite")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def open_engine(url: str) -> AsyncEngine:
    """An SQLAlchemy engine on the database (the migrations', and tests' inspections)."""
    async_url = engine_url(url)
    if make_url(async_url).get_backend_name() != "sqlite":
        return create_async_engine(async_url)
    engine = create_async_engine(async_url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are this module's: BEGIN IMMEDIATE below
        cursor = dbapi_connection.cursor()
        for pragma in (*PRAGMAS, "journal_mode=WAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


async def upgrade(url: str, revision: str) -> None:
    engine = open_engine(url)
    postgresql = engine.dialect.name == "postgresql"
    try:
        async with engine.connect() as connection:
            if postgresql:
                await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            try:
                await connection.run_sync(_upgrade, revision)
                await connection.commit()
            finally:
                if postgresql:
                    await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                    await connection.commit()
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def newest_version() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(MIGRATIONS).get_current_head()


def sqlite_structure(path: str) -> str:
    """The schema of the SQLite database at `path` as a script that builds it: tables (the
    FTS5 table without the shadow tables it makes for itself), then indexes, then triggers,
    then the version row."""
    raw = sqlite3.connect(path)
    try:
        entries = raw.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid").fetchall()
        version = raw.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    finally:
        raw.close()
    virtual = [name for kind, name, sql in entries if kind == "table" and sql.upper().startswith("CREATE VIRTUAL TABLE")]
    kept = [(kind, sql) for kind, name, sql in entries if not any(name.startswith(f"{table}_") for table in virtual)]
    order = {"table": 0, "view": 1, "index": 2, "trigger": 3}
    statements = [sql for kind, sql in sorted(kept, key=lambda entry: order[entry[0]])]
    statements.append(f"INSERT INTO alembic_version (version_num) VALUES ('{version}')")
    header = "-- The newest metadata schema on SQLite, as the migrations build it. Generated: do not edit;\n"
    header += "-- python -m registry.core.metadata.migrate --dump-sqlite > registry/core/metadata/structure.sqlite.sql\n"
    return header + "".join(f"{statement};\n" for statement in statements)


def dump_sqlite() -> str:
    with tempfile.TemporaryDirectory() as scratch:
        path = f"{scratch}/schema.sqlite3"
        asyncio.run(upgrade(f"sqlite:///{path}", "head"))
        return sqlite_structure(path)


def main() -> None:
    if sys.argv[1:] == ["--dump-sqlite"]:
        sys.stdout.write(dump_sqlite())
        return
    (revision,) = sys.argv[1:]
    url = sys.stdin.read().strip()
    asyncio.run(upgrade(url, revision))
    if revision == "head" and newest_version() != SCHEMA_VERSION:
        sys.exit(f"SCHEMA_VERSION is {SCHEMA_VERSION} but the newest migration is {newest_version()}")


if __name__ == "__main__":
    main()
