"""A recording, fault-injecting HTTP proxy to put in front of a registry in client tests.

Every exchange is recorded (method, path, query, request headers, status), so a test can assert
what the client actually sent: a `Range` header, a `?mount=&from=`, how many blob GETs. A
`Fault` answers matching requests itself (a 503 with Retry-After, say) a given number of times,
or forwards them but cuts the response body after some bytes, as a broken connection would.
Bodies are streamed both ways; `Host` is the proxy's, so registries that build absolute
`Location` URLs point them back at the proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import free_port

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "proxy-authorization"}


@dataclass
class Exchange:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0


@dataclass
class Fault:
    matches: Callable[[web.Request], bool]
    times: int = 1
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None
    """Forward the request, but close the connection after this many body bytes."""
    pause: float | None = None
    """Forward the request, but sleep this long between 64 KiB chunks of the body (a slow link)."""
    hits: int = 0


class RegistryProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.exchanges: list[Exchange] = []
        self.faults: list[Fault] = []
        self._server: TestServer | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> RegistryProxy:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._server = TestServer(app, host="127.0.0.1", port=free_port())
        await self._server.start_server()
        return self

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
        if self._session is not None:
            await self._session.close()

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.port}"

    def add_fault(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def requests(self, method: str | None = None, path_contains: str = "", query_key: str | None = None) -> list[Exchange]:
        return [
            exchange
            for exchange in self.exchanges
            if (method is None or exchange.method == method)
            and path_contains in exchange.path
            and (query_key is None or query_key in exchange.query)
        ]

    def _fault_for(self, request: web.Request) -> Fault | None:
        for fault in self.faults:
            if fault.hits < fault.times and fault.matches(request):
                fault.hits += 1
                return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        exchange = Exchange(request.method, request.path, dict(request.query), dict(request.headers))
        self.exchanges.append(exchange)
        fault = self._fault_for(request)
        if fault is not None and fault.cut_after is None and fault.pause is None:
            exchange.status = fault.status
            await request.read()
            return web.json_response(
                {"errors": [{"code": "UNAVAILABLE", "message": "injected fault"}]}, status=fault.status, headers=fault.headers
            )
        headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP}
        headers["Host"] = self.host
        body = request.content.iter_chunked(64 * 1024) if request.body_exists else None
        assert self._session is not None
        async with self._session.request(
            request.method,
            self.upstream + request.raw_path,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            exchange.status = upstream.status
            response = web.StreamResponse(status=upstream.status)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            sent = 0
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                if fault is not None and fault.cut_after is not None and sent + len(chunk) >= fault.cut_after:
                    await response.write(chunk[: fault.cut_after - sent])
                    assert request.transport is not None
                    request.transport.close()  # the client sees the body end early
                    return response
                await response.write(chunk)
                sent += len(chunk)
                if fault is not None and fault.pause:
                    await asyncio.sleep(fault.pause)
            await response.write_eof()
            return response
