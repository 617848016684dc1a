"""Sliding-window limits: pulls per client in Docker Hub's shape, and failed sign-ins.

Counts manifest GETs per client (the authenticated user, else the remote address) in a
sliding window and answers 429 TOOMANYREQUESTS with `Retry-After` past the limit. The counts
live in the metadata database, so N replicas behind a balancer allow the limit once, not N
times. Sign-ins that are still running are counted per process (`SignInGate.in_flight`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .metadata import Connection, Database
from .metadata.sql import LIKE_ESCAPE, like_escaped

T = TypeVar("T")
INSERT_EVENT = 'INSERT INTO rate_events ("key", at) VALUES (:key, :at)'


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after: int

    def headers(self, limit: int, window: int) -> dict[str, str]:
        headers = {"ratelimit-limit": f"{limit};w={window}", "ratelimit-remaining": f"{self.remaining};w={window}"}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class SlidingWindowLimiter:
    """At most `limit` events per key in any `window` seconds, counted in the metadata database
    (`rate_events`), so every replica of a deployment draws on one allowance. Checking and
    counting happen in one transaction under a lock on the key (PostgreSQL: an advisory lock;
    SQLite: writers are serial), so concurrent requests never both take the last slot."""

    def __init__(self, database: Database, scope: str, limit: int, window: int, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.scope = scope
        self.limit = limit
        self.window = window
        self._clock = clock

    def _key(self, key: str) -> str:
        return f"{self.scope}:{key}"[:300]

    async def _decide(self, connection: Connection, key: str, now: float) -> Decision:
        recent = await connection.fetch_one(
            'SELECT count(*), min(at) FROM rate_events WHERE "key" = :key AND at > :since', {"key": key, "since": now - self.window}
        )
        assert recent is not None
        count, oldest = recent[0], recent[1]
        if count >= self.limit:
            return Decision(False, 0, max(1, math.ceil(oldest + self.window - now)))
        return Decision(True, self.limit - count, 0)

    async def peek(self, key: str) -> Decision:
        """Whether one more event would be allowed, without counting one."""
        key, now = self._key(key), self._clock()
        async with self.database.read() as connection:
            return await self._decide(connection, key, now)

    async def record(self, key: str) -> None:
        async with self.database.write() as connection:
            await connection.execute(INSERT_EVENT, {"key": self._key(key), "at": self._clock()})

    async def check(self, key: str) -> Decision:
        """Count one event for `key` if it is within the limit."""
        key, now = self._key(key), self._clock()
        async with self.database.write() as connection:
            await self.database.lock(connection, key)
            await connection.execute('DELETE FROM rate_events WHERE "key" = :key AND at <= :since', {"key": key, "since": now - self.window})
            decision = await self._decide(connection, key, now)
            if decision.allowed:
                await connection.execute(INSERT_EVENT, {"key": key, "at": now})
                decision = Decision(True, decision.remaining - 1, 0)
        return decision

    async def prune(self) -> int:
        """Forget events older than the window, of every key (idle clients included)."""
        async with self.database.write() as connection:
            return await connection.execute(
                f'DELETE FROM rate_events WHERE "key" LIKE :scope {LIKE_ESCAPE} AND at <= :since',
                {"scope": like_escaped(f"{self.scope}:") + "%", "since": self._clock() - self.window},
            )


class Throttled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry in {retry_after}s")
        self.retry_after = retry_after


class SignInGate:
    """Failed attempts (a sliding window) plus the attempts still in flight, per key: an
    attempt runs only while both together stay under the limit (registry.signin)."""

    def __init__(self, failures: SlidingWindowLimiter) -> None:
        self.failures = failures
        self.in_flight: Counter[str] = Counter()
        self._changed: asyncio.Condition | None = None

    @property
    def changed(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def attempt(self, key: str, check: Callable[[], Awaitable[T | None]]) -> T | None:
        async with self.changed:
            while True:
                decision = await self.failures.peek(key)
                if not decision.allowed:
                    raise Throttled(decision.retry_after)
                if decision.remaining > self.in_flight[key]:
                    break
                await self.changed.wait()
            self.in_flight[key] += 1
        user: T | None = None
        try:
            user = await check()
        finally:
            async with self.changed:
                self.in_flight[key] -= 1
                if self.in_flight[key] <= 0:
                    del self.in_flight[key]
                if user is None:
                    await self.failures.record(key)
                self.changed.notify_all()
        return user
