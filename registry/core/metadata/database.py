"""The metadata database: SQLite (the embedded default, `sqlite.py`) or PostgreSQL (asyncpg, for
several replicas, `postgresql.py`), its schema version, and transactions.

Reads run in `read()`, each statement on its own snapshot, as READ COMMITTED gives on
PostgreSQL (SQLite: autocommit statements in WAL mode, which never wait on a writer). Changes
run in `write()` (SQLite: BEGIN IMMEDIATE, so two writers queue instead of failing an upgrade
from a read lock; PostgreSQL: READ COMMITTED, with changes written as single statements —
`star_count = star_count + 1` — or under `lock(key)`). Statements are SQL text (`sql.py`).

The schema's history is Alembic's (`migrations/`), and Alembic with SQLAlchemy is about 20 MiB
of a process's memory, so neither is ever imported here: serving processes (forked from the one
that migrated) carry none of it. An empty SQLite database gets the newest schema from
`structure.sqlite.sql` (what the migrations build, dumped; a test checks the two agree); any
other migration runs Alembic in a child process (`migrate.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlsplit

from .postgresql import PostgresDatabase
from .sql import Connection, Transactions
from .sqlite import SqliteDatabase

log = logging.getLogger("dockyard.metadata")

MEMORY = "sqlite://"
SCHEMA_VERSION = "0003"
"""The newest migration (a test checks it is Alembic's head): a database already there is
recognised without loading Alembic."""
STRUCTURE = Path(__file__).with_name("structure.sqlite.sql")
"""The newest schema of an SQLite database, as the migrations leave it (`python -m
registry.core.metadata.migrate --dump-sqlite` writes it)."""
MIGRATION_TIMEOUT = 600.0
SQLITE_HAS_VERSIONS = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"

Dialect = Literal["sqlite", "postgresql"]


class MetadataUrlError(ValueError):
    """A `metadata.url` that names no database Dockyard can use."""


class MigrationError(RuntimeError):
    """Alembic could not bring the schema to the version asked for."""


def parse_url(url: str) -> tuple[Dialect, str | None]:
    """The dialect of `postgresql://…` or `sqlite:///path` (as users write them) and what the
    driver opens: the DSN, or the SQLite file (None: in memory)."""
    scheme, _, rest = url.partition("://")
    driver = scheme.partition("+")[0].lower()
    if not rest and driver != "sqlite" or not scheme.replace("+", "").isalnum():
        raise MetadataUrlError(f"metadata.url {url!r} is not a database URL (postgresql://user:password@host/db or sqlite:///path)")
    if driver in ("postgresql", "postgres"):
        try:
            urlsplit(url).port  # noqa: B018  (raises on a bad port)
        except ValueError:
            raise MetadataUrlError(f"metadata.url {url!r} has an invalid port") from None
        return "postgresql", "postgresql://" + rest
    if driver == "sqlite":
        path = rest.removeprefix("/").partition("?")[0]
        return "sqlite", None if path in ("", ":memory:") else path
    raise MetadataUrlError(f"metadata.url {url!r}: Dockyard keeps its metadata in PostgreSQL or SQLite")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect, target = parse_url(url)
        self.driver: Transactions = SqliteDatabase(target) if self.dialect == "sqlite" else PostgresDatabase(target or "")
        self.in_memory = self.dialect == "sqlite" and target is None
        self._settlers: list[Callable[[], Awaitable[None]]] = []
        self._statement_listeners: list[Callable[[str], None]] = []

    def settle_first(self, settle: Callable[[], Awaitable[None]]) -> None:
        """Have every `read()` and `write()` await `settle()` first: writes a store made in
        the background (see `RepositorySettingsStore.create_soon`) are in before this process
        reads or changes anything, so it never sees its own writes missing."""
        self._settlers.append(settle)

    async def settle(self) -> None:
        for settle in self._settlers:
            await settle()

    def on_statement(self, listener: Callable[[str], None]) -> None:
        """Call `listener(sql)` before each statement this process sends (what tests count)."""
        self._statement_listeners.append(listener)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        await self.settle()
        async with self.driver.read() as connection:
            yield self._traced(connection)

    @contextlib.asynccontextmanager
    async def write(self, *, settle: bool = True) -> AsyncIterator[Connection]:
        """A transaction; `settle=False` only for the background writes `settle()` waits for."""
        if settle:
            await self.settle()
        async with self.driver.write() as connection:
            yield self._traced(connection)

    def _traced(self, connection: Connection) -> Connection:
        return cast(Connection, _Traced(connection, self._statement_listeners)) if self._statement_listeners else connection

    async def lock(self, connection: Connection, key: str) -> None:
        """Serialize writers of `key` until the transaction ends (SQLite's writers are serial already)."""
        if self.dialect == "postgresql":
            await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))", {"key": key})

    # -- schema ----------------------------------------------------------------------------------
    async def version(self) -> str | None:
        """The schema version the database is at; None for an empty database."""
        if self.dialect == "sqlite":
            exists = SQLITE_HAS_VERSIONS
        else:
            exists = "SELECT to_regclass('alembic_version') IS NOT NULL"
        async with self.driver.read() as connection:
            if not await connection.scalar(exists):
                return None
            version: str | None = await connection.scalar("SELECT version_num FROM alembic_version")
            return version

    async def migrate(self) -> None:
        """Bring the schema to the newest version; replicas starting together take turns."""
        if await self.version() == SCHEMA_VERSION:
            return
        async with _migration_turn():
            if self.dialect == "sqlite" and await self._create_newest():
                return
            await self._alembic("head")

    async def upgrade_to(self, revision: str) -> None:
        """Migrate to one named version (tests of the step from one schema to the next)."""
        async with _migration_turn():
            await self._alembic(revision)

    async def _create_newest(self) -> bool:
        """An empty SQLite database gets the newest schema in one transaction (a second
        process doing the same waits for it, then finds it done); False if not empty."""
        statements = _statements(STRUCTURE.read_text())
        async with self.driver.write() as connection:
            if await connection.scalar(SQLITE_HAS_VERSIONS):  # another process was first
                return bool(await connection.scalar("SELECT version_num FROM alembic_version") == SCHEMA_VERSION)
            if await connection.scalar("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
                return False
            for statement in statements:
                await connection.execute(statement)
        log.info("metadata: created the schema at version %s", SCHEMA_VERSION)
        return True

    async def _alembic(self, revision: str) -> None:
        """Alembic's upgrade to `revision`, in a child process (see the module's docstring)."""
        if self.in_memory:
            raise MigrationError("an in-memory database is created at the newest schema; it has no older version to migrate from")
        from registry.workers import module_environment, python_command

        command = python_command("from registry.core.metadata.migrate import main; main()")
        child = await asyncio.create_subprocess_exec(
            *command, revision, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=module_environment(),
        )  # fmt: skip
        try:
            _, errors = await asyncio.wait_for(child.communicate(self.url.encode()), MIGRATION_TIMEOUT)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
            raise
        if child.returncode != 0:
            detail = errors.decode(errors="replace").strip().splitlines()
            raise MigrationError(f"migrating the metadata database to {revision} failed: {detail[-1] if detail else f'exit {child.returncode}'}")

    async def analyze(self) -> None:
        """Refresh the query planner's statistics (after a bulk load; autovacuum and SQLite's
        own optimizer do it over time)."""
        async with self.driver.write() as connection:
            await connection.execute("ANALYZE")

    async def close(self) -> None:
        await self.driver.close()


class _Traced:
    """A connection that tells listeners each statement before sending it."""

    def __init__(self, connection: Connection, listeners: list[Callable[[str], None]]) -> None:
        self._connection = connection
        self._listeners = listeners

    def __getattr__(self, name: str) -> object:
        method = getattr(self._connection, name)

        def traced(sql: str, *args: object) -> object:
            for listener in self._listeners:
                listener(sql)
            return method(sql, *args)

        return traced


def _statements(script: str) -> list[str]:
    """The statements of an SQL script, one per item (a trigger's body stays whole)."""
    import sqlite3

    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        if not pending and (not line.strip() or line.startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement at the end of the script: {pending[:80]!r}")
    return statements


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _migration_turn() -> asyncio.Lock:
    """Migrations started together in one process (apps started at once) take turns, so only
    the first does the work; processes are kept apart by the database's own locks."""
    loop = asyncio.get_running_loop()
    if loop not in _turns:
        _turns[loop] = asyncio.Lock()
    return _turns[loop]
