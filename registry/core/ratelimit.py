"""Sliding-window limits: pulls per client in Docker Hub's shape, and failed sign-ins.

Counts manifest GETs per client (the authenticated user, else the remote address) in a
sliding window and answers 429 TOOMANYREQUESTS with `Retry-After` past the limit. Each
process counts on its own: with N replicas behind a balancer a client gets up to N times
the limit, which bounds abuse without a shared counter service.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

MAX_TRACKED_CLIENTS = 100_000


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
    """At most `limit` events per key in any `window` seconds."""

    def __init__(self, limit: int, window: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= MAX_TRACKED_CLIENTS:
                self._forget_idle(now)
            events = self._events[key] = deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def peek(self, key: str) -> Decision:
        """Whether one more event would be allowed, without counting one."""
        now = self._clock()
        events = self._recent(key, now)
        if len(events) >= self.limit:
            return Decision(False, 0, max(1, math.ceil(events[0] + self.window - now)))
        return Decision(True, self.limit - len(events), 0)

    def record(self, key: str) -> None:
        now = self._clock()
        self._recent(key, now).append(now)

    def check(self, key: str) -> Decision:
        """Count one event for `key` if it is within the limit."""
        decision = self.peek(key)
        if decision.allowed:
            self.record(key)
            decision = Decision(True, decision.remaining - 1, 0)
        return decision

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, events in self._events.items() if not events or events[-1] <= now - self.window]:
            del self._events[key]


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
                decision = self.failures.peek(key)
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
                    self.failures.record(key)
                self.changed.notify_all()
        return user
