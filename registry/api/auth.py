"""Access control on the distribution API with Docker bearer tokens.

Handlers declare what they need with `@requires(...)`; the middleware checks the request's
bearer token against it. No token, or an invalid one: 401 with a `WWW-Authenticate: Bearer`
challenge naming the scope. A valid token lacking the action: 401 again when signing in or a wider token could help
(anonymous callers, or users the action is permitted to), else 403 DENIED.
With `auth.enabled` false every request is allowed, as a bare registry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from ..core.hub import Hub
from ..core.hub.models import User
from ..core.hub.permissions import repository_actions
from ..core.hub.scopes import InvalidToken, Scope, granted_actions
from .http import parse_name
from .v2.errors import Denied, Unauthorized

if TYPE_CHECKING:
    from ..core.hub.signing import TokenSigner

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
ScopeOf = Callable[[web.Request], Scope | None]
ACCESS_ATTRIBUTE = "__dockyard_scope__"
CHALLENGE_ATTRIBUTE = "__dockyard_challenge_also__"


def requires(
    action: str,
    *,
    also: tuple[str, ...] = (),
    name_key: str = "name",
    challenge_also: Callable[[web.Request], list[Scope]] | None = None,
) -> Callable[[H], H]:
    """The handler acts on the repository in `match_info[name_key]` with `action`.

    `also` lists actions to ask for in the challenge besides (docker asks pull,push to push);
    `challenge_also` names further scopes the request could use (a mount's source repository),
    asked for in the challenge but not required.
    """

    def scope_of(request: web.Request) -> Scope:
        # checked first: a name becomes part of the challenge header, and a bad one is no scope
        name = parse_name(request.match_info[name_key])
        return Scope("repository", name, frozenset({action, *also}))

    def decorate(handler: H) -> H:
        setattr(handler, ACCESS_ATTRIBUTE, (scope_of, action))
        if challenge_also is not None:
            setattr(handler, CHALLENGE_ATTRIBUTE, challenge_also)
        return handler

    return decorate


def requires_catalog(handler: H) -> H:
    setattr(handler, ACCESS_ATTRIBUTE, (lambda request: Scope("registry", "catalog", frozenset({"*"})), "*"))
    return handler


@dataclass
class AuthContext:
    """Who is calling, as far as the handlers need to know."""

    enabled: bool
    subject: str | None = None
    claims: dict[str, Any] | None = None
    hub: Hub | None = None

    def token_allows(self, kind: str, name: str, action: str) -> bool:
        return not self.enabled or (self.claims is not None and action in granted_actions(self.claims, kind, name))

    async def user(self) -> User | None:
        if not self.enabled or not self.subject or self.hub is None:
            return None
        return await self.hub.users.get(self.subject)

    async def may_pull(self, repository: str) -> bool:
        """Pull permission checked against the Hub's records (for listings, which a token cannot enumerate)."""
        if not self.enabled:
            return True
        assert self.hub is not None
        return "pull" in await repository_actions(self.hub, await self.user(), repository)


AUTH = web.RequestKey("auth", AuthContext)
OPEN = AuthContext(enabled=False)


def auth_context(request: web.Request) -> AuthContext:
    return request.get(AUTH, OPEN)


class Authenticator:
    def __init__(self, signer: TokenSigner, hub: Hub, realm: str | None) -> None:
        self.signer = signer
        self.hub = hub
        self.realm = realm

    def challenge(self, request: web.Request, scope: Scope | None, error: str | None = None) -> str:
        from .http import external_base

        realm = self.realm or f"{external_base(request)}/token"
        parts = [f'realm="{realm}"', f'service="{self.signer.service}"']
        if scope is not None:
            further = getattr(request.match_info.handler, CHALLENGE_ATTRIBUTE, None)
            scopes = [scope, *(further(request) if further else [])]
            parts.append(f'scope="{" ".join(str(s) for s in scopes)}"')
        if error:
            parts.append(f'error="{error}"')
        return "Bearer " + ",".join(parts)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        declared = getattr(request.match_info.handler, ACCESS_ATTRIBUTE, None)
        scope_of, action = declared if declared else (lambda _request: None, None)
        scope = scope_of(request)

        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer "):
            raise Unauthorized(
                "authentication required",
                detail=[scope.claim()] if scope else None,
                headers={"WWW-Authenticate": self.challenge(request, scope)},
            )
        try:
            claims = self.signer.verify(header[7:].strip())
        except InvalidToken as error:
            raise Unauthorized(
                f"invalid bearer token: {error}",
                headers={"WWW-Authenticate": self.challenge(request, scope, "invalid_token")},
            ) from None
        context = AuthContext(True, claims.get("sub") or None, claims, self.hub)

        if scope is not None and action is not None and action not in granted_actions(claims, scope.type, scope.name):
            anonymous = context.subject is None
            if anonymous or (
                scope.type == "repository"
                and action in await repository_actions(self.hub, await context.user(), scope.name)
            ):
                # Signing in (or a token with more scope) could help: ask for it, as Docker Hub does.
                raise Unauthorized(
                    f"token does not grant {action} on {scope.name}",
                    headers={"WWW-Authenticate": self.challenge(request, scope, "insufficient_scope")},
                )
            raise Denied(
                f"requested access to {scope.type} {scope.name!r} is denied ({action})",
                detail=[scope.claim()],
            )
        request[AUTH] = context
        return await handler(request)
