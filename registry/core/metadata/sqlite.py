"""SQLite through the standard library's sqlite3, each connection with a thread of its own.

A statement is one hop to the connection's thread (execute, fetch every row, count the
changes), where a general-purpose async wrapper takes several; the thread runs a connection's
statements in the order they were sent, so the ROLLBACK after a cancelled statement runs after
it, never beside it. Reads autocommit (WAL: a reader never waits for a writer); writes run
between BEGIN IMMEDIATE and COMMIT, so two writers queue (`busy_timeout`) instead of failing to
upgrade a read lock. Every commit is synced (synchronous=FULL): durable, not only consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .sql import Params, Row, expand_lists

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
MAX_CONNECTIONS = 8
"""Open at once per process; more concurrent users of the database wait for one."""
WAL_ATTEMPTS = 250
PRAGMAS = (f"busy_timeout={BUSY_TIMEOUT_MS}", "synchronous=FULL", "foreign_keys=ON")
"""Every connection's settings besides WAL (which the file keeps): wait for a busy writer,
sync every commit (durable, not only consistent), enforce foreign keys."""


def connect(path: str) -> sqlite3.Connection:
    """A connection as Dockyard uses one: no implicit transactions, WAL, synced commits,
    foreign keys enforced, waiting for a busy writer rather than failing."""
    raw = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False, uri=path.startswith("file:"))
    raw.row_factory = sqlite3.Row
    for pragma in PRAGMAS:
        raw.execute(f"PRAGMA {pragma}")
    _use_wal(raw)
    return raw


def _use_wal(raw: sqlite3.Connection) -> None:
    """WAL, which the file keeps once set. Setting it needs the file to itself and does not
    wait for a busy handler: connections opening a new file at once retry until one has."""
    for _ in range(WAL_ATTEMPTS - 1):
        try:
            if raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal" or raw.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.02)
    raw.execute("PRAGMA journal_mode=WAL")


def _run(raw: sqlite3.Connection, sql: str, params: Params) -> tuple[list[sqlite3.Row], int]:
    cursor = raw.execute(sql, params)
    try:
        return cursor.fetchall(), cursor.rowcount
    finally:
        cursor.close()


class SqliteConnection:
    """A sqlite3 connection and its thread."""

    def __init__(self, raw: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self.raw = raw
        self.thread = thread

    @classmethod
    async def open(cls, path: str) -> SqliteConnection:
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        try:
            raw = await asyncio.get_running_loop().run_in_executor(thread, connect, path)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(raw, thread)

    async def call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """`function(raw)` on the connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.thread, function, self.raw)

    async def _statement(self, sql: str, params: Params | None) -> tuple[list[sqlite3.Row], int]:
        sql, bound = expand_lists(sql, params or {})
        return await asyncio.get_running_loop().run_in_executor(self.thread, _run, self.raw, sql, bound)

    async def execute(self, sql: str, params: Params | None = None) -> int:
        return (await self._statement(sql, params))[1]

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        await self.call(lambda raw: raw.executemany(sql, rows).close())

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        return list((await self._statement(sql, params))[0])

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        rows = (await self._statement(sql, params))[0]
        return rows[0] if rows else None

    async def scalar(self, sql: str, params: Params | None = None) -> Any:
        rows = (await self._statement(sql, params))[0]
        return rows[0][0] if rows else None

    async def scalars(self, sql: str, params: Params | None = None) -> list[Any]:
        return [row[0] for row in (await self._statement(sql, params))[0]]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.call(lambda raw: raw.close())
        self.thread.shutdown(wait=False)


class SqliteDatabase:
    """Connections to one SQLite file, opened when needed and kept for reuse; or, for
    `path` None, one in-memory database, which lives in its single connection (its writers
    take turns in this process)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._idle: list[SqliteConnection] = []
        self._available: asyncio.Semaphore | None = None
        self._memory: asyncio.Future[SqliteConnection] | None = None
        self._memory_writer: asyncio.Lock | None = None

    async def _memory_connection(self) -> SqliteConnection:
        if self._memory is None:
            self._memory = asyncio.ensure_future(SqliteConnection.open(":memory:"))
        return await asyncio.shield(self._memory)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[SqliteConnection]:
        if self.path is None:
            yield await self._memory_connection()
            return
        if self._available is None:
            self._available = asyncio.Semaphore(MAX_CONNECTIONS)
        async with self._available:
            connection = self._idle.pop() if self._idle else await SqliteConnection.open(self.path)
            finished = False  # every statement sent has run (not so after a cancellation)
            try:
                yield connection
                finished = True
            except Exception:
                finished = True
                raise
            finally:
                if finished and not connection.raw.in_transaction:
                    self._idle.append(connection)
                else:  # a statement may still run, or a transaction is left open: not handed out again
                    await connection.close()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[SqliteConnection]:
        async with self._connection() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[SqliteConnection]:
        async with contextlib.AsyncExitStack() as stack:
            if self.path is None:
                if self._memory_writer is None:
                    self._memory_writer = asyncio.Lock()
                await stack.enter_async_context(self._memory_writer)
            connection = await stack.enter_async_context(self._connection())
            await connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                if connection.raw.in_transaction:  # (some errors, a full disk among them, end it already)
                    await connection.execute("ROLLBACK")
                raise
            await connection.execute("COMMIT")

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()
        if self._memory is not None and self._memory.done() and not self._memory.cancelled() and not self._memory.exception():
            await self._memory.result().close()
        self._memory = None
