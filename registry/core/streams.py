"""Async byte-stream helpers used while receiving blobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

BUFFER_SIZE = 1024 * 1024
# Below this, hashing inline is cheaper than a hop to a worker thread.
THREAD_HASH_THRESHOLD = 64 * 1024


async def rebuffer(source: AsyncIterable[bytes], size: int = BUFFER_SIZE) -> AsyncIterator[bytes]:
    """Regroup a stream of small network reads into chunks of about `size` bytes (one copy)."""
    pending: list[bytes] = []
    pending_size = 0
    async for chunk in source:
        pending.append(chunk)
        pending_size += len(chunk)
        if pending_size >= size:
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending, pending_size = [], 0
    if pending:
        yield b"".join(pending)


async def hashing(source: AsyncIterable[bytes], hasher: Any) -> AsyncIterator[bytes]:
    """Pass chunks through, feeding each to `hasher` off the event loop.

    hashlib releases the GIL on large inputs, so hashing in a thread keeps the loop serving
    other requests while a big layer streams in.
    """
    async for chunk in source:
        if len(chunk) >= THREAD_HASH_THRESHOLD:
            await asyncio.to_thread(hasher.update, chunk)
        else:
            hasher.update(chunk)
        yield chunk


class LengthMismatch(Exception):
    def __init__(self, expected: int, received: int) -> None:
        super().__init__(f"expected {expected} bytes, received {received}")
        self.expected = expected
        self.received = received


async def exactly(source: AsyncIterable[bytes], expected: int | None) -> AsyncIterator[bytes]:
    """Pass chunks through, raising LengthMismatch when the total is not `expected`.

    Raised from inside the stream, so an all-or-nothing append rolls the chunk back.
    """
    received = 0
    async for chunk in source:
        received += len(chunk)
        if expected is not None and received > expected:
            raise LengthMismatch(expected, received)
        yield chunk
    if expected is not None and received != expected:
        raise LengthMismatch(expected, received)


async def empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator
