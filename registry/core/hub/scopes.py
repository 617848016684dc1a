"""Scopes of Docker registry tokens and what a token's claims grant (no JOSE code here, so
the registry loads the JWT library only when auth is enabled)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Scope:
    """`repository:<name>:<actions>` or `registry:catalog:*`."""

    type: str
    name: str
    actions: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> Scope:
        kind, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name or not actions:
            raise ValueError(f"invalid scope {text!r}: expected type:name:actions")
        return cls(kind, name, frozenset(action for action in actions.split(",") if action))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


class InvalidToken(Exception):
    """A bearer token that is expired, forged, for another audience, or malformed."""


def granted_actions(claims: dict[str, Any], kind: str, name: str) -> frozenset[str]:
    actions: set[str] = set()
    for entry in claims.get("access") or []:
        if isinstance(entry, dict) and entry.get("type") == kind and entry.get("name") == name:
            actions.update(str(action) for action in entry.get("actions") or [])
    return frozenset(actions)
