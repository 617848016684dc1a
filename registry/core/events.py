"""What happened to a repository's manifests, told to whoever listens (webhooks, today).

`Manifests` emits an event after each successful push or delete, the way distribution wraps a
repository with a notifications listener; listeners must return at once and never raise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

EventKind = Literal["push", "delete"]
EVENTS: tuple[EventKind, ...] = ("push", "delete")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Actor:
    """Who made a change, and through which address of the registry."""

    subject: str | None = None
    """The authenticated user; None when access control is off."""
    registry: str = ""
    """The host (and port) the client talked to."""


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


Listener = Callable[[Event], None]
