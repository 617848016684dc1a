"""Who may do what to a repository.

A repository's namespace is its first path component. The user of that name owns it; an
organization of that name grants its members' roles (read: pull; write: pull, push, delete;
admin: the same plus settings). Public repositories can be pulled by anyone, anonymous
included. Site admins may do everything. Single-component names belong to site admins. A
personal access token's scope caps what its user may do through it (`SCOPE_ACTIONS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .models import User
from .search import Audience

if TYPE_CHECKING:
    from . import Hub

ROLE_ACTIONS = {
    "read": frozenset({"pull"}),
    "write": frozenset({"pull", "push", "delete"}),
    "admin": frozenset({"pull", "push", "delete", "admin"}),
}
ALL_ACTIONS = ROLE_ACTIONS["admin"]
SCOPE_ACTIONS = {
    "read": frozenset({"pull"}),
    "write": frozenset({"pull", "push"}),
    "delete": frozenset({"pull", "push", "delete"}),
    "admin": ALL_ACTIONS,
}
"""The most a personal access token of each scope may do, whatever its user may."""


def namespace_of(repository: str) -> str | None:
    return repository.split("/", 1)[0] if "/" in repository else None


async def repository_actions(hub: Hub, user: User | None, repository: str) -> frozenset[str]:
    """Every action `user` (None: anonymous) may take on `repository`, no more than the scope
    of the access token they signed in with allows."""
    actions = await _role_actions(hub, user, repository)
    if user is not None and user.token_scope is not None:
        actions = actions & SCOPE_ACTIONS[user.token_scope]
    return actions


async def _role_actions(hub: Hub, user: User | None, repository: str) -> frozenset[str]:
    actions: frozenset[str] = frozenset()
    if user is not None:
        if user.admin:
            return ALL_ACTIONS
        namespace = namespace_of(repository)
        if namespace == user.name:
            return ALL_ACTIONS
        if namespace is not None:
            org = await hub.organizations.get(namespace)
            role = org.members.get(user.name) if org else None
            if role is not None:
                actions = ROLE_ACTIONS[role]
    if "pull" not in actions:
        settings = await hub.repositories.get(repository)
        if settings is not None and settings.visibility == "public":
            actions = actions | {"pull"}
    return actions


async def can_pull(hub: Hub, user: User | None, repository: str) -> bool:
    return "pull" in await repository_actions(hub, user, repository)


async def audience(hub: Hub, user: User | None, *, auth_enabled: bool = True) -> Audience:
    """What `user` may find by search or browsing: the same rule as `repository_actions`' pull."""
    if not auth_enabled or (user is not None and user.admin):
        return Audience(everything=True)
    if user is None:
        return Audience()
    return Audience(namespaces=frozenset([user.name, *await hub.organizations.of_member(user.name)]))
