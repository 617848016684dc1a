"""Taking over an HTTP connection for `attach` and `exec start`, as dockerd does.

The docker CLI sends `Connection: Upgrade`, `Upgrade: tcp` and expects `HTTP/1.1 101 UPGRADED`,
then raw bytes both ways; when its stdin ends it half-closes its side and keeps reading. aiohttp
closes a transport on EOF, so after writing the response head we swap in a protocol of our own
(`transport.set_protocol`) that keeps the connection half-open, and write to the transport
directly. Clients that do not ask for an upgrade (docker-py's `exec_run`) get a 200 with the
same stream, delimited by closing the connection.

The handler then owns the connection until it calls `close()`; what it returns to aiohttp is
never written (the transport is closed by then).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


class _Takeover(asyncio.Protocol):
    def __init__(self, original: Any) -> None:
        self.original = original
        self.reader = asyncio.StreamReader(limit=1 << 20)
        self.closed = asyncio.get_running_loop().create_future()
        self._can_write = asyncio.Event()
        self._can_write.set()

    def data_received(self, data: bytes) -> None:
        self.reader.feed_data(data)

    def eof_received(self) -> bool:
        self.reader.feed_eof()
        return True  # stay half-open: we still write

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.reader.at_eof():
            self.reader.feed_eof()
        self._can_write.set()
        if not self.closed.done():
            self.closed.set_result(None)
        self.original.connection_lost(exc)


class RawStream:
    """The taken-over connection: `reader` (the client's bytes), `write`, `drain`, `close`."""

    def __init__(self, transport: asyncio.Transport, protocol: _Takeover) -> None:
        self.transport = transport
        self.protocol = protocol
        self.reader = protocol.reader

    @property
    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        await self.protocol._can_write.wait()

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


async def take_over(request: web.Request, content_type: str = RAW_STREAM) -> RawStream:
    transport = request.transport
    assert transport is not None
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp" or "upgrade" in request.headers.get("Connection", "").lower()
    head = [
        "HTTP/1.1 101 UPGRADED" if upgrade else "HTTP/1.1 200 OK",
        f"Content-Type: {content_type}",
    ]
    head += ["Connection: Upgrade", "Upgrade: tcp"] if upgrade else ["Connection: close"]
    api_version = request.get("api_version")
    if api_version:
        head.append(f"Api-Version: {api_version}")
    protocol = _Takeover(request.protocol)
    transport.set_protocol(protocol)
    transport.write(("\r\n".join(head) + "\r\n\r\n").encode())
    return RawStream(transport, protocol)  # type: ignore[arg-type]
