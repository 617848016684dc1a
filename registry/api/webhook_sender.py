"""The HTTP client webhook deliveries go through: one aiohttp session, no proxies from the
environment, no redirects, and (unless `webhooks.allow_private_networks`) a resolver that only
ever connects to globally routable addresses."""

from __future__ import annotations

import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from ..core.hub.webhooks import SendFailed, is_public


class InternalAddress(OSError):
    """A webhook host that resolves only to addresses we refuse to deliver to."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, but drops addresses that are not globally
    routable (loopback, private, link-local, metadata services…). The connection goes to the
    filtered result, so a name that re-resolves to an internal address cannot slip through."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        public = [entry for entry in await self._inner.resolve(host, port, family) if is_public(entry["host"])]
        if not public:
            raise InternalAddress(f"{host} resolves only to internal addresses; webhooks.allow_private_networks is off")
        return public

    async def close(self) -> None:
        await self._inner.close()


class AiohttpSender:
    """A `registry.core.hub.webhooks.Sender`; create it inside the running event loop."""

    def __init__(self, *, allow_private_networks: bool) -> None:
        connector = None if allow_private_networks else aiohttp.TCPConnector(resolver=PublicOnlyResolver())
        self._session = aiohttp.ClientSession(trust_env=False, connector=connector)

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                return response.status
        except TimeoutError:
            raise SendFailed(f"no answer within {timeout}s", retryable=True) from None
        except aiohttp.ClientConnectorError as error:
            if isinstance(error.os_error, InternalAddress):
                raise SendFailed(str(error.os_error), retryable=False) from None  # refused by policy
            raise SendFailed(f"{type(error).__name__}: {error}", retryable=True) from None
        except aiohttp.ClientError as error:
            raise SendFailed(f"{type(error).__name__}: {error}", retryable=True) from None

    async def close(self) -> None:
        await self._session.close()
