"""Serving stored blobs: zero-copy sendfile from disk, or streaming from the backend."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator

from aiohttp import web

from ..core.blobs import ByteRange

READ_CHUNK = 1024 * 1024
RANGE_HEADER = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None) -> ByteRange | None:
    """The single range of a `Range: bytes=` header, or None to send everything: malformed or
    multi-range headers are ignored (RFC 9110 allows it)."""
    if not header:
        return None
    match = RANGE_HEADER.match(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    return ByteRange(int(first) if first else None, int(last) if last else None)


class FileSliceResponse(web.StreamResponse):
    """Sends `count` bytes of a file from `offset` with loop.sendfile (zero-copy)."""

    def __init__(self, path: str, offset: int, count: int, *, status: int, headers: dict[str, str]) -> None:
        super().__init__(status=status, headers=headers)
        self._path = path
        self._offset = offset
        self._count = count
        self.content_length = count

    async def prepare(self, request: web.BaseRequest) -> web.AbstractStreamWriter | None:  # type: ignore[override]
        loop = asyncio.get_running_loop()
        handle = await loop.run_in_executor(None, open, self._path, "rb")
        try:
            writer = await super().prepare(request)
            if self._count == 0 or request.method == "HEAD":
                return writer
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("connection lost")
            try:
                await loop.sendfile(transport, handle, self._offset, self._count)
            except NotImplementedError:
                await self._copy(loop, handle)
            await super().write_eof()
            return writer
        finally:
            handle.close()

    async def _copy(self, loop: asyncio.AbstractEventLoop, handle: "os.PathLike[str] | object") -> None:
        handle.seek(self._offset)  # type: ignore[attr-defined]
        remaining = self._count
        while remaining > 0:
            chunk = await loop.run_in_executor(None, handle.read, min(READ_CHUNK, remaining))  # type: ignore[attr-defined]
            if not chunk:
                break
            remaining -= len(chunk)
            await self.write(chunk)


async def stream_response(
    request: web.Request, chunks: AsyncIterator[bytes], *, status: int, headers: dict[str, str], length: int
) -> web.StreamResponse:
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
