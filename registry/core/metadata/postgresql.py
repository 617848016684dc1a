"""PostgreSQL through asyncpg's pool (several replicas share one database).

Reads autocommit, each statement on its own snapshot (READ COMMITTED); writes are one
transaction each, in which changes are single statements (`star_count = star_count + 1`) or
taken under `Database.lock`. asyncpg prepares each statement once per connection and keeps it,
and replaces a pooled connection the server closed (a restart) when it is next acquired.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from .sql import Params, Row, changed_rows, expand_lists, numbered

if TYPE_CHECKING:
    import asyncpg

POOL_SIZE = 30
IDLE_LIFETIME = 300.0
"""Seconds an unused connection stays open."""



def _bind(sql: str, params: Params | None) -> tuple[str, list[Any]]:
    sql, bound = expand_lists(sql, params or {})
    text, names = numbered(sql)
    return text, [bound[name] for name in names]


class PostgresConnection:
    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw

    async def execute(self, sql: str, params: Params | None = None) -> int:
        text, args = _bind(sql, params)
        return changed_rows(await self.raw.execute(text, *args))

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        text, names = numbered(sql)
        await self.raw.executemany(text, [[row[name] for name in names] for row in rows])

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        text, args = _bind(sql, params)
        return list(await self.raw.fetch(text, *args))

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        text, args = _bind(sql, params)
        row: Row | None = await self.raw.fetchrow(text, *args)
        return row

    async def scalar(self, sql: str, params: Params | None = None) -> Any:
        text, args = _bind(sql, params)
        return await self.raw.fetchval(text, *args)

    async def scalars(self, sql: str, params: Params | None = None) -> list[Any]:
        return [row[0] for row in await self.fetch(sql, params)]


class PostgresDatabase:
    """A pool of connections to `dsn`, opened on first use (it needs the running loop)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: asyncio.Future[asyncpg.Pool] | None = None

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None or (self._pool.done() and self._pool.exception() is not None):
            import asyncpg

            self._pool = asyncio.ensure_future(asyncpg.create_pool(self.dsn, min_size=0, max_size=POOL_SIZE, max_inactive_connection_lifetime=IDLE_LIFETIME))
        return await asyncio.shield(self._pool)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[PostgresConnection]:
        async with (await self.pool()).acquire() as raw:
            yield PostgresConnection(raw)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[PostgresConnection]:
        async with (await self.pool()).acquire() as raw, raw.transaction():
            yield PostgresConnection(raw)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if pool.done() and not pool.cancelled() and pool.exception() is None:
            await pool.result().close()
        else:
            pool.cancel()
