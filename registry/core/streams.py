"""Async byte-stream helpers used while receiving blobs."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from storage_backends.base import observed


def hashing(source: AsyncIterable[bytes], hasher: Any) -> AsyncIterator[bytes]:
    """Pass chunks through, feeding each to `hasher` off the event loop.

    hashlib releases the GIL on large inputs, so hashing in a thread keeps the loop serving
    other requests while a big layer streams in.
    """
    return observed(source, hasher.update)


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
