"""Per-repository webhooks: where they are kept, and their delivery after a push or a delete.

A repository's webhooks live in one small object beside its settings,
`repositories/<name>/_webhooks.json`, so every replica sees the same list and finding them
for an event is one read. Handlers only *enqueue* (`Webhooks.notify`: synchronous, never
raises, never waits); a background task owned by the app (`Webhooks.run`, for
`app.cleanup_ctx`) reads the webhooks and POSTs the event to each, retrying with bounded
exponential backoff. Delivery is best effort and kept in memory: events still queued on a
replica when it stops get `drain_timeout` seconds, then are dropped (and logged).

Never: delay or fail the push or delete that caused an event, follow a redirect, log a
webhook's URL (it often holds a token), or hand a webhook's secret back to anyone.

The body of every delivery (JSON, UTF-8), one per event and webhook; keys are always present:

    {
      "event": "push",                          # or "delete"
      "delivery": "<uuid4>",                    # = X-Dockyard-Delivery; the same on each retry
      "webhook": "<webhook id>",
      "timestamp": "2025-01-31T12:00:00.000Z",  # when the push or delete succeeded, UTC
      "registry": "registry.example.com:5000",  # the Host the client talked to
      "repository": "alice/app",
      "tag": "v1",                              # null when pushed or deleted by digest
      "digest": "sha256:...",                   # null when a tag was deleted
      "media_type": "application/vnd.oci.image.manifest.v1+json",   # null for delete
      "pusher": "alice"                         # authenticated user; null when auth is off
    }

Headers: `Content-Type: application/json`, `User-Agent: Dockyard-Webhook/1`,
`X-Dockyard-Event`, `X-Dockyard-Delivery`, and, for webhooks created with a secret,
`X-Dockyard-Signature: sha256=<hex HMAC-SHA256 of the body bytes with the secret>`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from pydantic import BaseModel

from storage_backends import ObjectNotFound, StorageBackend

from .. import layout
from .accounts import HubError, NotFound
from .models import Webhook

log = logging.getLogger("dockyard.webhooks")

EventKind = Literal["push", "delete"]
EVENTS: tuple[EventKind, ...] = ("push", "delete")
MAX_WEBHOOKS = 20
MAX_URL_LENGTH = 2048
MAX_SECRET_LENGTH = 256
USER_AGENT = "Dockyard-Webhook/1"
RETRYABLE_STATUSES = frozenset({408, 425, 429})


def webhooks_key(repository: str) -> str:
    return layout.repository_webhooks(repository)


def validate_url(text: str) -> str:
    """An absolute http(s) URL with a host; anything else is a 400."""
    invalid = HubError("webhook url must be an absolute http:// or https:// URL")
    if len(text) > MAX_URL_LENGTH:
        raise HubError(f"webhook url is longer than {MAX_URL_LENGTH} characters")
    if any(character.isspace() or ord(character) < 32 for character in text):
        raise invalid
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise invalid from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid
    return text


def sign(secret: str, body: bytes) -> str:
    """The `X-Dockyard-Signature` value of `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _StoredWebhooks(BaseModel):
    webhooks: list[Webhook] = []


class WebhookStore:
    """The webhooks of each repository, one object per repository.

    Changes are read-modify-write, serialized within a process; two replicas changing the
    same repository's webhooks at the same instant can lose one change (as with settings).
    """

    def __init__(self, storage: StorageBackend) -> None:
        self.storage = storage
        self._lock = asyncio.Lock()

    async def list(self, repository: str) -> list[Webhook]:
        try:
            raw = await self.storage.get_bytes(webhooks_key(repository))
        except ObjectNotFound:
            return []
        return _StoredWebhooks.model_validate_json(raw).webhooks

    async def add(self, repository: str, url: str, events: list[EventKind], secret: str | None = None) -> Webhook:
        url = validate_url(url)
        wanted = [kind for kind in EVENTS if kind in events]
        if not wanted:
            raise HubError("a webhook needs at least one of the events push, delete")
        if secret is not None and not 1 <= len(secret) <= MAX_SECRET_LENGTH:
            raise HubError(f"a webhook secret has 1 to {MAX_SECRET_LENGTH} characters")
        async with self._lock:
            hooks = await self.list(repository)
            if len(hooks) >= MAX_WEBHOOKS:
                raise HubError(f"a repository has at most {MAX_WEBHOOKS} webhooks")
            hook = Webhook(id=secrets.token_hex(8), url=url, events=wanted, secret=secret)
            await self._save(repository, [*hooks, hook])
        return hook

    async def remove(self, repository: str, webhook_id: str) -> None:
        async with self._lock:
            hooks = await self.list(repository)
            kept = [hook for hook in hooks if hook.id != webhook_id]
            if len(kept) == len(hooks):
                raise NotFound(f"repository {repository!r} has no webhook {webhook_id!r}")
            if kept:
                await self._save(repository, kept)
            else:
                await self.storage.delete(webhooks_key(repository))

    async def _save(self, repository: str, hooks: list[Webhook]) -> None:
        await self.storage.put_bytes(webhooks_key(repository), _StoredWebhooks(webhooks=hooks).model_dump_json().encode())


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per delivery, the backoff between them, and each attempt's time limit."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 4.0
    timeout: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based): 0.5, 1, 2, 4, 4, ..."""
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    kind: EventKind
    repository: str
    tag: str | None
    digest: str | None
    media_type: str | None
    pusher: str | None
    registry: str
    timestamp: str = field(default_factory=_now)

    def body(self, delivery: str, webhook: str) -> dict[str, Any]:
        return {
            "event": self.kind,
            "delivery": delivery,
            "webhook": webhook,
            "timestamp": self.timestamp,
            "registry": self.registry,
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "media_type": self.media_type,
            "pusher": self.pusher,
        }


@dataclass
class Delivery:
    """What became of one event sent to one webhook (kept in memory, the last few per webhook)."""

    id: str
    webhook: str
    event: EventKind
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    delivered: bool = False
    done: bool = False


class InternalAddress(OSError):
    """A webhook host that resolves only to addresses we refuse to deliver to."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, but drops addresses that are not globally
    routable (loopback, private, link-local, metadata services…). The connection goes to the
    filtered result, so a name that re-resolves to an internal address cannot slip through."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        public = [entry for entry in await self._inner.resolve(host, port, family) if _is_public(entry["host"])]
        if not public:
            raise InternalAddress(f"{host} resolves only to internal addresses; webhooks.allow_private_networks is off")
        return public

    async def close(self) -> None:
        await self._inner.close()


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]").split("%", 1)[0]).is_global
    except ValueError:
        return False


class Webhooks:
    """The store, and the dispatcher that delivers events to it in the background."""

    def __init__(
        self,
        storage: StorageBackend,
        policy: RetryPolicy | None = None,
        *,
        max_pending: int = 1000,
        concurrency: int = 16,
        drain_timeout: float = 5.0,
        history: int = 20,
        allow_private_networks: bool = False,
    ) -> None:
        self.store = WebhookStore(storage)
        self.policy = policy or RetryPolicy()
        self.max_pending = max_pending
        self.concurrency = concurrency
        self.drain_timeout = drain_timeout
        self.history = history
        self.allow_private_networks = allow_private_networks
        self._accepting = False
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._recent: dict[str, deque[Delivery]] = {}

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self, _app: object) -> AsyncIterator[None]:
        """For `app.cleanup_ctx`: deliver while the app runs; at cleanup drain, then cancel."""
        connector = None if self.allow_private_networks else aiohttp.TCPConnector(resolver=PublicOnlyResolver())
        self._session = aiohttp.ClientSession(trust_env=False, connector=connector)
        self._slots = asyncio.Semaphore(self.concurrency)
        self._accepting = True
        try:
            yield
        finally:
            await self._stop()

    async def _stop(self) -> None:
        self._accepting = False  # new events are dropped; queued ones may still retry meanwhile
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.drain_timeout)
        if self._tasks:
            log.warning("webhooks: %d events still being delivered at shutdown are dropped", len(self._tasks))
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def wait_idle(self) -> None:
        """Until every event enqueued so far is delivered or given up on."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # -- events ----------------------------------------------------------------------------
    def notify(
        self,
        kind: EventKind,
        repository: str,
        *,
        tag: str | None,
        digest: str | None,
        pusher: str | None,
        registry: str,
        media_type: str | None = None,
    ) -> None:
        """Enqueue an event for the repository's webhooks; returns at once, never raises."""
        if not self._accepting:
            log.debug("webhooks: not running, %s event of %s dropped", kind, repository)
            return
        if len(self._tasks) >= self.max_pending:
            log.warning("webhooks: %d events pending, %s event of %s dropped", len(self._tasks), kind, repository)
            return
        event = Event(kind, repository, tag, digest, media_type, pusher, registry)
        task = asyncio.get_running_loop().create_task(self._dispatch(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def deliveries(self, webhook_id: str) -> list[Delivery]:
        """The most recent deliveries to a webhook by this process, oldest first."""
        return list(self._recent.get(webhook_id, ()))

    async def _dispatch(self, event: Event) -> None:
        try:
            hooks = [hook for hook in await self.store.list(event.repository) if event.kind in hook.events]
        except Exception:
            log.exception("webhooks: cannot read the webhooks of %s; %s event dropped", event.repository, event.kind)
            return
        await asyncio.gather(*(self._deliver(hook, event) for hook in hooks))

    async def _deliver(self, hook: Webhook, event: Event) -> None:
        delivery = Delivery(id=str(uuid.uuid4()), webhook=hook.id, event=event.kind)
        self._recent.setdefault(hook.id, deque(maxlen=self.history)).append(delivery)
        body = json.dumps(event.body(delivery.id, hook.id)).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Dockyard-Event": event.kind,
            "X-Dockyard-Delivery": delivery.id,
        }
        if hook.secret:
            headers["X-Dockyard-Signature"] = sign(hook.secret, body)
        try:
            for attempt in range(1, self.policy.attempts + 1):
                delivery.attempts = attempt
                retry = await self._attempt(hook.url, body, headers, delivery)
                if delivery.delivered or not retry or attempt == self.policy.attempts:
                    break
                await asyncio.sleep(self.policy.delay(attempt))
        except Exception as error:  # a bug here must not kill the other deliveries of this event
            delivery.error = f"{type(error).__name__}: {error}"
            log.exception("webhooks: delivery %s to webhook %s failed unexpectedly", delivery.id, hook.id)
        finally:
            delivery.done = True
        if delivery.delivered:
            log.info("webhooks: %s event of %s delivered to webhook %s (%s, attempt %d)",
                     event.kind, event.repository, hook.id, delivery.status, delivery.attempts)
        else:
            log.warning("webhooks: %s event of %s not delivered to webhook %s after %d attempts: %s",
                        event.kind, event.repository, hook.id, delivery.attempts, delivery.error)

    async def _attempt(self, url: str, body: bytes, headers: dict[str, str], delivery: Delivery) -> bool:
        """One POST; records the outcome in `delivery` and says whether another try may help."""
        session, slots = self._session, self._slots
        if session is None or slots is None:
            delivery.error = "stopped"
            return False
        host = urlsplit(url).hostname or ""
        if not self.allow_private_networks and _is_ip_literal(host) and not _is_public(host):
            delivery.status, delivery.error = None, f"{host} is an internal address; webhooks.allow_private_networks is off"
            return False
        async with slots:
            try:
                async with session.post(
                    url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
                ) as response:
                    delivery.status = response.status
            except TimeoutError:
                delivery.status, delivery.error = None, f"no answer within {self.policy.timeout}s"
                return True
            except aiohttp.ClientConnectorError as error:
                if isinstance(error.os_error, InternalAddress):
                    delivery.status, delivery.error = None, str(error.os_error)
                    return False  # refused by policy: another try cannot help
                delivery.status, delivery.error = None, f"{type(error).__name__}: {error}"
                return True
            except aiohttp.ClientError as error:
                delivery.status, delivery.error = None, f"{type(error).__name__}: {error}"
                return True
        if 200 <= delivery.status < 300:
            delivery.delivered, delivery.error = True, None
            return False
        delivery.error = f"HTTP {delivery.status}"
        return delivery.status >= 500 or delivery.status in RETRYABLE_STATUSES
