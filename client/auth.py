"""Answering a registry's `WWW-Authenticate` challenge: anonymous, Basic, and Docker's token flow.

`Authenticator` remembers the registry's challenge and gives each request its Authorization
header for the scopes it needs. For `Bearer realm=...,service=...,scope=...` it fetches a token
from the realm (GET with Basic credentials or anonymously; an OAuth2 POST with
`grant_type=refresh_token` when a refresh or identity token is held), caches it per scope set
until it expires, and accepts both `token` and `access_token` in the answer.

It knows nothing of retries or registry endpoints (that is `transport`), and never reads or
writes credential files (that is `credentials`).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from dataclasses import dataclass, field

import aiohttp

from .errors import AuthenticationFailed, AuthenticationRequired, RegistryError, RegistryUnavailable, parse_error_body

CLIENT_ID = "dockyard"
MIN_TOKEN_LIFETIME = 60  # seconds; the token spec's default when expires_in is absent
EXPIRY_MARGIN = 10  # refresh this many seconds before a token expires


@dataclass(frozen=True)
class Credentials:
    """What the user gave for one registry: a username and password and/or an identity token."""

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None
    """An OAuth2 refresh token (Docker's `identitytoken`), exchanged by POST at the token realm."""

    @property
    def has_password(self) -> bool:
        return bool(self.username) and self.password is not None

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:  # never print a password
        return f"Credentials(username={self.username!r}, password={'***' if self.password else None})"


@dataclass(frozen=True)
class Challenge:
    scheme: str
    """Lowercased: "basic" or "bearer" (others are ignored)."""
    params: dict[str, str] = field(default_factory=dict)


_CHALLENGE_PART = re.compile(
    r"""\s*,?\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*))?"""
)


def parse_www_authenticate(headers: list[str]) -> list[Challenge]:
    """All challenges in the WWW-Authenticate headers, in order; params keys lowercased."""
    challenges: list[Challenge] = []
    for header in headers:
        for match in _CHALLENGE_PART.finditer(header):
            name, value = match.group(1), match.group(2)
            if value is None:
                challenges.append(Challenge(name.lower(), {}))
            elif challenges:
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                challenges[-1].params[name.lower()] = value
    return challenges


def choose_challenge(challenges: list[Challenge]) -> Challenge | None:
    """Bearer when offered (it scopes access), else Basic; None for schemes the client cannot answer."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


@dataclass
class Token:
    value: str
    expires_at: float

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at - EXPIRY_MARGIN


class Authenticator:
    """One registry's challenge and tokens; gives requests their Authorization header.

    Until a request has been challenged, requests go anonymous (the transport pings /v2/ first,
    as Docker does, so the challenge is usually known before the first real request).
    """

    def __init__(self, session: aiohttp.ClientSession, registry: str, credentials: Credentials | None = None) -> None:
        self._session = session
        self._registry = registry
        self.credentials = credentials
        self.challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], Token] = {}
        self._extra_scopes: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._refresh_token = credentials.identity_token if credentials else None
        self._lock = asyncio.Lock()

    @property
    def sends(self) -> str | None:
        """What authenticates requests now: None, "basic" or "bearer" (a token got with the password)."""
        if self.challenge is None or self.credentials is None:
            return None
        if self.challenge.scheme == "basic":
            return "basic" if self.credentials.has_password else None
        return "bearer" if (self.credentials.has_password or self._refresh_token) else None

    async def header(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization header value for a request needing `scopes`, or None (anonymous)."""
        challenge = self.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            if self.credentials is not None and self.credentials.has_password:
                return self.credentials.basic_header()
            return None
        token = await self._token(challenge, scopes)
        return f"Bearer {token}"

    def learn(self, challenges: list[Challenge], scopes: tuple[str, ...], sent: str | None) -> bool:
        """Take in a 401's challenges; True when retrying with new authorization could succeed.

        `sent` is the Authorization header the refused request carried (None without one). A
        scope the challenge names beyond `scopes` is asked for too, for these scopes only.
        """
        offered = choose_challenge(challenges)
        if offered is None:
            return False
        key = _key(scopes)
        extra = tuple(scope for scope in offered.params.get("scope", "").split(" ") if scope and scope not in scopes)
        widened = bool(extra) and self._extra_scopes.get(key) != extra
        if widened:
            self._extra_scopes[key] = extra
        challenge = Challenge(offered.scheme, {k: v for k, v in offered.params.items() if k in ("realm", "service")})
        if challenge != self.challenge:
            self.challenge = challenge
            self._tokens.pop(key, None)
            if challenge.scheme == "basic":
                return self.credentials is not None and self.credentials.has_password
            return True
        if challenge.scheme == "bearer" and sent is not None:
            if offered.params.get("error") == "insufficient_scope" and not widened:
                return False
            # A token refused (expired or revoked early, or too narrow): fetch a new one, once.
            return self._tokens.pop(key, None) is not None
        return False

    async def _token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str:
        key = _key(scopes)
        async with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.fresh:
                return cached.value
            token = await self._fetch_token(challenge, key)
            self._tokens[key] = token
            return token.value

    async def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> Token:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryError(f"{self._registry} sent a Bearer challenge without a realm")
        service = challenge.params.get("service")
        wanted = list(scopes) + list(self._extra_scopes.get(scopes, ()))
        if self._refresh_token:
            answer = await self._post_refresh(realm, service, wanted)
            if answer is not None:
                return answer
        return await self._get_token(realm, service, wanted)

    async def _post_refresh(self, realm: str, service: str | None, scopes: list[str]) -> Token | None:
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token or "", "client_id": CLIENT_ID}
        if service:
            form["service"] = service
        if scopes:
            form["scope"] = " ".join(scopes)
        async with self._session.post(realm, data=form) as response:
            if response.status in (404, 405) and self.credentials is not None and self.credentials.has_password:
                return None  # the realm has no OAuth2 endpoint: fall back to GET with the password
            return await self._read_token(response, with_password=False)

    async def _get_token(self, realm: str, service: str | None, scopes: list[str]) -> Token:
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params += [("scope", scope) for scope in scopes]
        headers = {}
        credentials = self.credentials
        if credentials is not None and credentials.has_password:
            params.append(("account", credentials.username or ""))
            headers["Authorization"] = credentials.basic_header()
        async with self._session.get(realm, params=params, headers=headers) as response:
            return await self._read_token(response, with_password="Authorization" in headers)

    async def _read_token(self, response: aiohttp.ClientResponse, *, with_password: bool) -> Token:
        body = await response.read()
        if response.status in (401, 403):
            if with_password or (self._refresh_token and response.status == 401):
                raise AuthenticationFailed(
                    f"authentication with {self._registry} failed: incorrect username or password", status=response.status
                )
            raise AuthenticationRequired(f"{self._registry} refused an anonymous token: authentication required", status=response.status)
        if response.status >= 500 or response.status == 429:
            raise RegistryUnavailable(f"token service of {self._registry} answered HTTP {response.status}", status=response.status)
        if response.status != 200:
            parsed = parse_error_body(body)
            raise RegistryError(
                f"token service of {self._registry} answered HTTP {response.status}: {parsed.message or body[:200]!r}",
                status=response.status,
            )
        try:
            document = await response.json(content_type=None)
            value = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError):
            value, document = None, {}
        if not isinstance(value, str) or not value:
            raise RegistryError(f"token service of {self._registry} answered without a token")
        if isinstance(document.get("refresh_token"), str):
            self._refresh_token = document["refresh_token"]
        lifetime = document.get("expires_in")
        if not isinstance(lifetime, (int, float)) or lifetime < MIN_TOKEN_LIFETIME:
            lifetime = MIN_TOKEN_LIFETIME
        return Token(value, time.monotonic() + lifetime)


def _key(scopes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(sorted(set(scopes)))
