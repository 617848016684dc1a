"""Per-repository webhooks: where they are kept, and their delivery after a push or a delete.

A repository's webhooks are rows of the metadata database, so every replica sees the same
list and finding them for an event is one query. `Manifests` only *enqueues* (`Webhooks.notify` is its event listener:
synchronous, never raises, never waits); background tasks, while `Webhooks.running(sender)` is
open, read the webhooks and POST the event to each through the sender (the HTTP client lives
with the HTTP side: `registry.api.webhook_sender`), retrying with bounded exponential backoff.
Delivery is best effort: events still queued on a replica when it stops get `drain_timeout`
seconds, then are dropped (and logged). Each delivery's outcome is kept in the database (the
last `history` per webhook), so every replica can show it.

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
import builtins
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from ..events import EVENTS, Event, EventKind
from ..metadata import Database
from .errors import HubError, NotFound
from .models import Webhook

log = logging.getLogger("dockyard.webhooks")

MAX_WEBHOOKS = 20
MAX_URL_LENGTH = 2048
MAX_SECRET_LENGTH = 256
USER_AGENT = "Dockyard-Webhook/1"
RETRYABLE_STATUSES = frozenset({408, 425, 429})
HOOKED_REFRESH_SECONDS = 1.0
"""How long a process trusts its list of which repositories have webhooks at all."""


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


class WebhookStore:
    """The webhooks of each repository, one row per webhook."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._hooked: frozenset[str] = frozenset()
        self._hooked_until = 0.0  # monotonic time; 0: read it again before trusting it
        self._changes = 0  # local adds and removes, so a read begun before one is not kept

    async def for_event(self, repository: str) -> builtins.list[Webhook]:
        """The webhooks an event in `repository` goes to. Most repositories have none, and
        which ones have any is read at most once per `HOOKED_REFRESH_SECONDS`, so a push to a
        repository without webhooks costs no query. A webhook added in this process counts at
        once; one added through another worker or replica, within that second."""
        now = time.monotonic()
        if now >= self._hooked_until:
            changes = self._changes
            async with self.database.read() as connection:
                hooked = frozenset(await connection.scalars("SELECT DISTINCT repository FROM webhooks"))
            if changes == self._changes:
                self._hooked, self._hooked_until = hooked, now + HOOKED_REFRESH_SECONDS
            else:
                return await self.list(repository)  # changed here meanwhile: ask for this one
        if repository not in self._hooked:
            return []
        return await self.list(repository)

    def _changed(self) -> None:
        self._changes += 1
        self._hooked_until = 0.0

    async def list(self, repository: str) -> builtins.list[Webhook]:
        async with self.database.read() as connection:
            rows = await connection.fetch(
                "SELECT id, url, events, secret, created FROM webhooks WHERE repository = :repository ORDER BY created", {"repository": repository}
            )
            return [
                Webhook.model_construct(id=row["id"], url=row["url"], events=row["events"].split(","), secret=row["secret"], created=row["created"])
                for row in rows
            ]

    async def add(self, repository: str, url: str, events: builtins.list[EventKind], secret: str | None = None) -> Webhook:
        url = validate_url(url)
        wanted = [kind for kind in EVENTS if kind in events]
        if not wanted:
            raise HubError("a webhook needs at least one of the events push, delete")
        if secret is not None and not 1 <= len(secret) <= MAX_SECRET_LENGTH:
            raise HubError(f"a webhook secret has 1 to {MAX_SECRET_LENGTH} characters")
        hook = Webhook(id=secrets.token_hex(8), url=url, events=wanted, secret=secret)
        async with self.database.write() as connection:
            await self.database.lock(connection, f"webhooks:{repository}")
            count = await connection.scalar("SELECT count(*) FROM webhooks WHERE repository = :repository", {"repository": repository})
            if count >= MAX_WEBHOOKS:
                raise HubError(f"a repository has at most {MAX_WEBHOOKS} webhooks")
            await connection.execute(
                "INSERT INTO webhooks (id, repository, url, events, secret, created) VALUES (:id, :repository, :url, :events, :secret, :created)",
                {"id": hook.id, "repository": repository, "url": url, "events": ",".join(wanted), "secret": secret, "created": hook.created},
            )
        self._changed()
        return hook

    async def remove(self, repository: str, webhook_id: str) -> None:
        async with self.database.write() as connection:
            removed = await connection.execute("DELETE FROM webhooks WHERE repository = :repository AND id = :id", {"repository": repository, "id": webhook_id})
        self._changed()
        if removed == 0:
            raise NotFound(f"repository {repository!r} has no webhook {webhook_id!r}")


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per delivery, the backoff between them, and each attempt's time limit."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 4.0
    timeout: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based): 0.5, 1, 2, 4, 4, ..."""
        return min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))


@dataclass
class Delivery:
    """What became of one event sent to one webhook (kept in the database, the last few per webhook)."""

    id: str
    webhook: str
    event: EventKind
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    delivered: bool = False
    done: bool = False


class SendFailed(Exception):
    """One POST that did not get an answer; `retryable` says whether another try may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Sender(Protocol):
    """Sends one webhook POST (never following redirects) and returns the answer's status."""

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int: ...

    async def close(self) -> None: ...


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]").split("%", 1)[0]).is_global
    except ValueError:
        return False


class Webhooks:
    """The store, and the dispatcher that delivers events to it in the background."""

    def __init__(
        self,
        database: Database,
        policy: RetryPolicy | None = None,
        *,
        max_pending: int = 1000,
        concurrency: int = 16,
        drain_timeout: float = 5.0,
        history: int = 20,
        allow_private_networks: bool = False,
    ) -> None:
        self.database = database
        self.store = WebhookStore(database)
        self.policy = policy or RetryPolicy()
        self.max_pending = max_pending
        self.concurrency = concurrency
        self.drain_timeout = drain_timeout
        self.history = history
        self.allow_private_networks = allow_private_networks
        self._accepting = False
        self._sender: Sender | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self, sender: Sender) -> AsyncIterator[None]:
        """Deliver through `sender` while open; on leaving, drain, then cancel what is left."""
        self._sender = sender
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
        sender, self._sender = self._sender, None
        if sender is not None:
            await sender.close()

    async def wait_idle(self) -> None:
        """Until every event enqueued so far is delivered or given up on."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # -- events ----------------------------------------------------------------------------
    def notify(self, event: Event) -> None:
        """Enqueue an event for the repository's webhooks; returns at once, never raises."""
        if not self._accepting:
            log.debug("webhooks: not running, %s event of %s dropped", event.kind, event.repository)
            return
        if len(self._tasks) >= self.max_pending:
            log.warning("webhooks: %d events pending, %s event of %s dropped", len(self._tasks), event.kind, event.repository)
            return
        task = asyncio.get_running_loop().create_task(self._dispatch(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliveries(self, webhook_id: str) -> list[Delivery]:
        """The most recent deliveries to a webhook (by any replica), oldest first."""
        async with self.database.read() as connection:
            rows = await connection.fetch(
                "SELECT id, webhook, event, attempts, status, error, delivered, done FROM webhook_deliveries "
                "WHERE webhook = :webhook ORDER BY created DESC LIMIT :history",
                {"webhook": webhook_id, "history": self.history},
            )
        return [
            Delivery(row["id"], row["webhook"], row["event"], row["attempts"], row["status"], row["error"], bool(row["delivered"]), bool(row["done"]))
            for row in reversed(rows)
        ]

    async def _record(self, delivery: Delivery, *, first: bool = False) -> None:
        """Keep the delivery's state; the first time, also forget all but the newest `history`."""
        state = {"attempts": delivery.attempts, "status": delivery.status, "error": delivery.error, "delivered": delivery.delivered, "done": delivery.done}
        try:
            async with self.database.write() as connection:
                if not first:
                    await connection.execute(
                        "UPDATE webhook_deliveries SET attempts = :attempts, status = :status, error = :error, delivered = :delivered, done = :done "
                        "WHERE id = :id",
                        {"id": delivery.id, **state},
                    )
                    return
                await connection.execute(
                    "INSERT INTO webhook_deliveries (id, webhook, event, created, attempts, status, error, delivered, done) "
                    "VALUES (:id, :webhook, :event, :created, :attempts, :status, :error, :delivered, :done)",
                    {"id": delivery.id, "webhook": delivery.webhook, "event": delivery.event, "created": time.time(), **state},
                )
                await connection.execute(
                    "DELETE FROM webhook_deliveries WHERE webhook = :webhook AND id NOT IN "
                    "(SELECT id FROM webhook_deliveries WHERE webhook = :webhook ORDER BY created DESC LIMIT :history)",
                    {"webhook": delivery.webhook, "history": self.history},
                )
        except Exception:  # the log of a delivery must never stop the delivery
            log.exception("webhooks: cannot record delivery %s", delivery.id)

    async def _dispatch(self, event: Event) -> None:
        try:
            hooks = [hook for hook in await self.store.for_event(event.repository) if event.kind in hook.events]
        except Exception:
            log.exception("webhooks: cannot read the webhooks of %s; %s event dropped", event.repository, event.kind)
            return
        await asyncio.gather(*(self._deliver(hook, event) for hook in hooks))

    async def _deliver(self, hook: Webhook, event: Event) -> None:
        delivery = Delivery(id=str(uuid.uuid4()), webhook=hook.id, event=event.kind)
        await self._record(delivery, first=True)
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
            await self._record(delivery)
        if delivery.delivered:
            log.info(
                "webhooks: %s event of %s delivered to webhook %s (%s, attempt %d)", event.kind, event.repository, hook.id, delivery.status, delivery.attempts
            )
        else:
            log.warning(
                "webhooks: %s event of %s not delivered to webhook %s after %d attempts: %s",
                event.kind,
                event.repository,
                hook.id,
                delivery.attempts,
                delivery.error,
            )

    async def _attempt(self, url: str, body: bytes, headers: dict[str, str], delivery: Delivery) -> bool:
        """One POST; records the outcome in `delivery` and says whether another try may help."""
        sender, slots = self._sender, self._slots
        if sender is None or slots is None:
            delivery.error = "stopped"
            return False
        host = urlsplit(url).hostname or ""
        if not self.allow_private_networks and _is_ip_literal(host) and not is_public(host):
            delivery.status, delivery.error = None, f"{host} is an internal address; webhooks.allow_private_networks is off"
            return False
        async with slots:
            try:
                delivery.status = await sender.post(url, body, headers, self.policy.timeout)
            except SendFailed as error:
                delivery.status, delivery.error = None, str(error)
                return error.retryable
        if 200 <= delivery.status < 300:
            delivery.delivered, delivery.error = True, None
            return False
        delivery.error = f"HTTP {delivery.status}"
        return delivery.status >= 500 or delivery.status in RETRYABLE_STATUSES
