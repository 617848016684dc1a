"""Pull rate limiting per client, in Docker Hub's shape.

Counts manifest GETs per client (the authenticated user, else the remote address) in a
sliding window and answers 429 TOOMANYREQUESTS with `Retry-After` past the limit. Each
process counts on its own: with N replicas behind a balancer a client gets up to N times
the limit, which bounds abuse without a shared counter service.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

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


class PullRateLimiter:
    def __init__(self, limit: int, window: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._pulls: dict[str, deque[float]] = {}

    def check(self, client: str) -> Decision:
        """Count one pull by `client` if it is within the limit."""
        now = self._clock()
        pulls = self._pulls.get(client)
        if pulls is None:
            if len(self._pulls) >= MAX_TRACKED_CLIENTS:
                self._forget_idle(now)
            pulls = self._pulls[client] = deque()
        while pulls and pulls[0] <= now - self.window:
            pulls.popleft()
        if len(pulls) >= self.limit:
            return Decision(False, 0, max(1, math.ceil(pulls[0] + self.window - now)))
        pulls.append(now)
        return Decision(True, self.limit - len(pulls), 0)

    def _forget_idle(self, now: float) -> None:
        for client in [c for c, pulls in self._pulls.items() if not pulls or pulls[-1] <= now - self.window]:
            del self._pulls[client]
