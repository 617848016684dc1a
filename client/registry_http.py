"""One registry's HTTP transport: URLs, authentication, bounded retries and error mapping.

`RegistryTransport.stream(...)` sends a request and yields the final response once the
401 -> challenge -> token -> retry dance is done and transient failures (429 honouring
Retry-After, 5xx, broken connections) have been retried with exponential backoff. Any status
the caller did not expect becomes a typed error naming the image (see `errors`).

It knows nothing of manifests or blobs (that is `distribution`) and never reads credential
files: credentials are handed to it.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp

from ocispec.reference import api_host

from .auth import Authenticator, Credentials, parse_www_authenticate
from .errors import RegistryUnavailable, Subject, error_for_status

log = logging.getLogger("dockyard.client")

USER_AGENT = "dockyard-client/0.1"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

Body = bytes | Callable[[], Any] | None
"""A request body: bytes, or a factory called for each attempt (so streamed bodies can be re-sent)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: `attempts` tries in all, delays base * 2**n capped at max_delay."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return min(self.base_delay * (2**attempt), self.max_delay)


@dataclass(frozen=True)
class ClientSettings:
    """How the client reaches registries; shared by pull, push, search and login."""

    config_dir: Path | None = None
    """Directory of Docker's config.json (None: $DOCKER_CONFIG, else ~/.docker)."""
    insecure_registries: frozenset[str] = frozenset()
    """Registries spoken to over plain http (localhost and 127.0.0.1 always are)."""
    default_registry: str = "docker.io"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = USER_AGENT

    def transport(self, session: aiohttp.ClientSession, registry: str, credentials: Credentials | None) -> RegistryTransport:
        """A transport to `registry` configured by these settings."""
        return RegistryTransport(
            session,
            registry,
            credentials=credentials,
            insecure_registries=self.insecure_registries,
            retry=self.retry,
            user_agent=self.user_agent,
        )


def uses_http(registry: str, insecure_registries: Iterable[str] = ()) -> bool:
    """Plain http for loopback hosts and registries listed as insecure (host or host:port)."""
    host, _, port = registry.rpartition(":")
    if not host or not port.isdigit():
        host = registry
    insecure = set(insecure_registries)
    return host in LOOPBACK_HOSTS or registry in insecure or host in insecure


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes


class RegistryTransport:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        registry: str,
        *,
        credentials: Credentials | None = None,
        insecure_registries: Iterable[str] = (),
        retry: RetryPolicy | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.session = session
        self.registry = registry
        scheme = "http" if uses_http(registry, insecure_registries) else "https"
        self.base_url = f"{scheme}://{api_host(registry)}"
        self.auth = Authenticator(session, registry, credentials)
        self.retry = retry or RetryPolicy()
        self.user_agent = user_agent
        self.requests = 0

    def url(self, path_or_location: str) -> str:
        """An absolute URL for an API path (`/v2/...`) or a Location header (absolute or relative)."""
        return urljoin(self.base_url + "/", path_or_location)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        subject: Subject,
        *,
        scopes: tuple[str, ...] = (),
        ok: Iterable[int] = (200,),
        headers: dict[str, str] | None = None,
        params: Any = None,
        data: Body = None,
        retry_connection_errors: bool = True,
        authenticate: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response to `method path`, once its status is in `ok`; else a typed error.

        `retry_connection_errors=False` for requests that must not be re-sent blindly when a
        connection broke mid-way (a chunk whose delivery is unknown); 429 and 5xx answers are
        still retried, since the registry reports it did not take the request.
        `authenticate=False` sends no Authorization and only learns a 401's challenge (the ping).
        """
        accepted = frozenset(ok)
        url = self.url(path)
        attempt = 0
        while True:
            try:
                response, authorization = await self._send(method, url, scopes, headers or {}, params, data, authenticate)
            except (TimeoutError, aiohttp.ClientConnectionError, RegistryUnavailable) as error:
                retriable = retry_connection_errors or isinstance(error, (aiohttp.ClientConnectorError, RegistryUnavailable))
                attempt += 1
                if not retriable or attempt >= self.retry.attempts:
                    if isinstance(error, RegistryUnavailable):
                        raise
                    raise RegistryUnavailable(
                        f"{subject.action} of {subject.name} failed: cannot reach {self.registry}: {_describe(error)}"
                    ) from error
                await self._backoff(attempt - 1, None, f"{method} {url}: {_describe(error)}")
                continue
            if response.status in RETRY_STATUSES and attempt + 1 < self.retry.attempts:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                response.release()
                await self._backoff(attempt, retry_after, f"{method} {url}: HTTP {response.status}")
                attempt += 1
                continue
            break
        try:
            if response.status not in accepted:
                body = await response.read()
                sent = self.auth.sends if authorization else None
                raise error_for_status(response.status, body, subject, sent=sent)
            yield response
        finally:
            response.release()

    async def fetch(self, method: str, path: str, subject: Subject, **kwargs: Any) -> Reply:
        """`stream` with the body read: for small answers (manifests, JSON, empty bodies)."""
        async with self.stream(method, path, subject, **kwargs) as response:
            return Reply(response.status, response.headers, await response.read())

    async def _send(
        self,
        method: str,
        url: str,
        scopes: tuple[str, ...],
        headers: dict[str, str],
        params: Any,
        data: Body,
        authenticate: bool,
    ) -> tuple[aiohttp.ClientResponse, str | None]:
        """The response, and the Authorization header it was sent with (after at most one 401)."""
        for auth_attempt in range(2):
            authorization = await self.auth.header(scopes) if authenticate else None
            # identity: digests are of the bytes as stored, and nothing here decompresses them
            sent = {"Accept-Encoding": "identity", **headers, "User-Agent": self.user_agent}
            if authorization:
                sent["Authorization"] = authorization
            body = data() if callable(data) else data
            self.requests += 1
            response = await self.session.request(method, url, headers=sent, params=params, data=body)
            if response.status != 401 or auth_attempt == 1:
                return response, authorization
            challenges = parse_www_authenticate(response.headers.getall("WWW-Authenticate", []))
            if not self.auth.learn(challenges, scopes, authorization) or not authenticate:
                return response, authorization
            response.release()
        raise AssertionError("unreachable")

    async def _backoff(self, attempt: int, retry_after: float | None, why: str) -> None:
        delay = self.retry.delay(attempt, retry_after)
        log.info("retrying in %.2fs after %s", delay, why)
        await asyncio.sleep(delay)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def new_session() -> aiohttp.ClientSession:
    """A session suited to registries: no overall timeout (layers can be large), no auto-decompression."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    return aiohttp.ClientSession(timeout=timeout, auto_decompress=False)


__all__ = [
    "Body",
    "ClientSettings",
    "RegistryTransport",
    "Reply",
    "RetryPolicy",
    "new_session",
    "parse_retry_after",
    "uses_http",
]
