"""HTTP plumbing shared by the routes: request parsing, common headers, the base URL clients
reach this registry under, graceful-shutdown accounting and per-client upload slots."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ocispec.digest import Digest, InvalidDigest
from ocispec.names import InvalidName, validate_repository

from ..core.errors import BlobUploadInvalid, DigestInvalid, NameInvalid
from .context import services
from .v2.errors import PaginationNumberInvalid, TooManyRequests, error_response

API_VERSION_HEADER = "Docker-Distribution-API-Version"
API_VERSION = "registry/2.0"
MAX_PAGE_SIZE = 10_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InFlight:
    """Counts requests being handled, so a stopping server can wait for them to finish.

    aiohttp's own shutdown stops reading request bodies at once, which would cut uploads
    that are still streaming in; the server drains with this instead, then shuts down.
    """

    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.count += 1
        self._idle.clear()
        try:
            response = await handler(request)
            if self.draining:
                response.force_close()  # no new request on this keep-alive connection
            return response
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until no request is in flight; False when `timeout` ran out first."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


IN_FLIGHT = web.AppKey("in_flight", InFlight)


async def add_common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """For the distribution API's responses."""
    response.headers[API_VERSION_HEADER] = API_VERSION
    location = response.headers.get("Location")
    if location is not None and location.startswith("/v2/"):
        # handlers name paths; API clients get absolute URLs, as the reference registry sends them
        response.headers["Location"] = external_base(request) + location


def external_base(request: web.Request) -> str:
    """`scheme://host[:port][/prefix]` under which clients reach this registry: `http.public_url`
    when set; else the request's own, with `X-Forwarded-Proto`/`X-Forwarded-Host` believed only
    from `http.trusted_proxies`."""
    settings = services(request).settings.http
    if settings.public_url:
        return settings.public_url
    scheme, host = request.scheme, request.host
    if settings.trusted_proxies and _from_trusted_proxy(request, settings.trusted_proxies):
        forwarded_proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        forwarded_host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        if forwarded_proto in ("http", "https"):
            scheme = forwarded_proto
        if forwarded_host and _HOST_HEADER.match(forwarded_host):
            host = forwarded_host
    return f"{scheme}://{host}"


_HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


def _from_trusted_proxy(request: web.Request, trusted: list[str]) -> bool:
    import ipaddress

    peer = request.remote
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in trusted)


def repository_name(request: web.Request, key: str = "name") -> str:
    """The validated repository name of the request's path."""
    return parse_name(request.match_info[key])


def parse_name(value: str) -> str:
    try:
        return validate_repository(value)
    except InvalidName as error:
        raise NameInvalid(str(error), detail={"name": value}) from None


def parse_digest(value: str | None, what: str = "digest") -> Digest:
    if not value:
        raise DigestInvalid(f"the {what} parameter is required")
    try:
        return Digest.parse(value)
    except InvalidDigest as error:
        raise DigestInvalid(str(error), detail={what: value}) from None


def pagination(request: web.Request) -> tuple[int | None, str | None]:
    """`n` and `last` of a paginated listing."""
    raw = request.query.get("n")
    limit: int | None = None
    if raw is not None and raw != "":
        try:
            limit = int(raw)
        except ValueError:
            raise PaginationNumberInvalid(f"n must be a whole number, not {raw!r}") from None
        if limit < 0 or limit > MAX_PAGE_SIZE:
            raise PaginationNumberInvalid(f"n must be between 0 and {MAX_PAGE_SIZE}")
    last = request.query.get("last") or None
    return limit, last


def next_link(path: str, limit: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": limit, "last": last})}>; rel="next"'


class MalformedForm(Exception):
    """A form body aiohttp cannot parse (a multipart without its boundary, bad encoding)."""


async def form_of(request: web.Request) -> Any:
    """The request's form fields; MalformedForm instead of whatever the parser raises."""
    try:
        return await request.post()
    except (ValueError, AssertionError, UnicodeDecodeError, HttpProcessingError) as error:
        raise MalformedForm(f"the form body cannot be read: {error}") from None


def request_body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body, streamed as the parser delivers it (never buffered whole, never
    joined: the storage backend gathers the pieces, see `storage_backends.base.batched`); a
    body that sends nothing for `http.body_idle_timeout` seconds is abandoned
    (BlobUploadInvalid)."""
    return _reads(request, services(request).settings.http.body_idle_timeout)


async def _reads(request: web.Request, idle_timeout: float) -> AsyncIterator[bytes]:
    # readchunk, not readany: readany joins everything buffered into one new bytes object.
    # One deadline, moved for each read, instead of a wait_for (a new task) per read; off
    # while the consumer has the piece, so it only ever interrupts the wait for the client.
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as deadline:
            while True:
                deadline.reschedule(loop.time() + idle_timeout)
                chunk, end_of_http_chunk = await request.content.readchunk()
                deadline.reschedule(None)
                if chunk:
                    yield chunk
                elif not end_of_http_chunk:
                    return
    except TimeoutError:
        raise BlobUploadInvalid(f"the request body sent nothing for {idle_timeout:g} s; abandoned") from None


class UploadSlots:
    """At most `http.max_uploads_per_client` blob uploads streaming at once per client address."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight: dict[str, int] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.limit or request.method not in ("POST", "PATCH", "PUT") or "/blobs/uploads" not in request.path:
            return await handler(request)
        client = request.remote or ""
        if self.in_flight.get(client, 0) >= self.limit:
            return error_response(request, TooManyRequests(
                f"this client already has {self.limit} uploads streaming; finish one first", headers={"Retry-After": "1"}))  # fmt: skip
        self.in_flight[client] = self.in_flight.get(client, 0) + 1
        try:
            return await handler(request)
        finally:
            self.in_flight[client] -= 1
            if not self.in_flight[client]:
                del self.in_flight[client]


def empty_response(status: int, headers: dict[str, Any]) -> web.Response:
    headers = {key: str(value) for key, value in headers.items()}
    headers["Content-Length"] = "0"
    return web.Response(status=status, headers=headers)
