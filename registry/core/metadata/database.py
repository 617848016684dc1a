"""The metadata database: one SQLAlchemy async engine over SQLite (aiosqlite, the embedded
default) or PostgreSQL (asyncpg, for several replicas), its migrations, and transactions.

Reads run in `read()`, each statement on its own snapshot, as READ COMMITTED gives on
PostgreSQL (SQLite: autocommit statements in WAL mode, which never wait on a writer; no BEGIN,
and no reset of the connection when it goes back to the pool: a read costs five round trips
to aiosqlite's thread instead of eight, about a third less CPU). Changes run in `write()`
(SQLite: BEGIN IMMEDIATE, so two writers queue instead of failing an upgrade from a read lock;
PostgreSQL: READ COMMITTED, with changes written as single statements — `star_count =
star_count + 1` — or under `lock(key)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.schema import Table

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

log = logging.getLogger("dockyard.metadata")

MIGRATIONS = str(Path(__file__).with_name("migrations"))
MIGRATION_LOCK = 7_320_114_519  # any fixed 64-bit number: PostgreSQL's advisory lock for migrations
BUSY_TIMEOUT_MS = 30_000
MEMORY = "sqlite://"
SCHEMA_VERSION = "0003"
"""The newest migration (a test checks it is Alembic's head): a database already there is
recognised without loading Alembic, which every worker process would otherwise carry."""


class MetadataUrlError(ValueError):
    """A `metadata.url` that names no database Dockyard can use."""


def engine_url(url: str) -> str:
    """`postgresql://…` or `sqlite:///path` (as users write them) with the async driver named."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise MetadataUrlError(f"metadata.url {url!r} is not a database URL (postgresql://user:password@host/db or sqlite:///path)") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    raise MetadataUrlError(f"metadata.url {url!r}: Dockyard keeps its metadata in PostgreSQL or SQLite")


class Database:
    def __init__(self, url: str) -> None:
        async_url = engine_url(url)
        self.url = url
        self.dialect = make_url(async_url).get_backend_name()
        options: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = make_url(async_url).database
            if not database or database == ":memory:":
                options["poolclass"] = StaticPool  # one connection: the in-memory database lives in it
            else:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
            options["pool_reset_on_return"] = None
        else:
            options.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(async_url, **options)
        if self.dialect == "sqlite":
            _sqlite_transactions(self.engine)
        self._settlers: list[Callable[[], Awaitable[None]]] = []

    def settle_first(self, settle: Callable[[], Awaitable[None]]) -> None:
        """Have every `read()` and `write()` await `settle()` first: writes a store made in
        the background (see `RepositorySettingsStore.create_soon`) are in before this process
        reads or changes anything, so it never sees its own writes missing."""
        self._settlers.append(settle)

    async def settle(self) -> None:
        for settle in self._settlers:
            await settle()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        await self.settle()
        async with self.engine.connect() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def write(self, *, settle: bool = True) -> AsyncIterator[AsyncConnection]:
        """A transaction; `settle=False` only for the background writes `settle()` waits for."""
        if settle:
            await self.settle()
        async with self.engine.connect() as connection:
            connection = await connection.execution_options(dockyard_write=True)
            async with connection.begin():
                yield connection

    async def lock(self, connection: AsyncConnection, key: str) -> None:
        """Serialize writers of `key` until the transaction ends (SQLite's writers are serial already)."""
        if self.dialect == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})

    def insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that can take `on_conflict_do_nothing` / `on_conflict_do_update`. (Each
        dialect's module is imported here, when used: the engine has loaded the one in use, and
        the other would add 2 MiB to every process.)"""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            return postgresql_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    # -- schema ----------------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Bring the schema to the newest version; replicas starting together take turns."""
        if await self.version() == SCHEMA_VERSION:
            return
        async with _alembic_turn(), self.engine.connect() as connection:
            connection = await connection.execution_options(dockyard_write=True)
            if self.dialect == "postgresql":
                await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            try:
                await connection.run_sync(_upgrade, "head")
                await connection.commit()
            finally:
                if self.dialect == "postgresql":
                    await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                    await connection.commit()

    async def upgrade_to(self, revision: str) -> None:
        """Migrate to one named version (tests of the step from one schema to the next)."""
        async with _alembic_turn(), self.engine.connect() as connection:
            connection = await connection.execution_options(dockyard_write=True)
            await connection.run_sync(_upgrade, revision)
            await connection.commit()

    async def analyze(self) -> None:
        """Refresh the query planner's statistics (after a bulk load; autovacuum and SQLite's
        own optimizer do it over time)."""
        async with self.engine.connect() as connection:
            await connection.execute(text("ANALYZE"))
            await connection.commit()

    async def version(self) -> str | None:
        """The schema version the database is at; None for an empty database."""

        def current(sync: Connection) -> str | None:
            if not inspect(sync).has_table("alembic_version"):
                return None
            return sync.execute(text("SELECT version_num FROM alembic_version")).scalar()

        async with self.engine.connect() as connection:
            return await connection.run_sync(current)

    async def close(self) -> None:
        await self.engine.dispose()


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _alembic_turn() -> asyncio.Lock:
    """Alembic keeps the running migration in module globals (`alembic.context`), so two
    migrations in one process (apps started at once) must not interleave; processes are kept
    apart by the database's own locks."""
    loop = asyncio.get_running_loop()
    if loop not in _turns:
        _turns[loop] = asyncio.Lock()
    return _turns[loop]


def newest_version() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(MIGRATIONS).get_current_head()


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _sqlite_transactions(engine: AsyncEngine) -> None:
    """SQLite as SQLAlchemy's docs recommend for real transactions: the driver's own
    transaction handling off, BEGIN IMMEDIATE emitted here for writes (reads autocommit), WAL,
    foreign keys on."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # every commit synced: durable, not only consistent
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        if connection.get_execution_options().get("dockyard_write"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
