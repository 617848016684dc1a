"""Signed session cookies and the CSRF tokens tied to them, for the web page.

A session is stateless: the cookie holds a small JSON record and an HMAC-SHA256 of it, keyed
with a secret derived from the token signing key (`TokenSigner.derive_key`), so every replica
sharing `auth.token_key_file` accepts every other's cookies, and nothing is stored server side.

The record names the user, a random nonce, its issue time and expiry, a fingerprint of the user's password
hash (changing the password ends every session) and, when the visitor signed in with a
personal access token, that token's id (revoking it ends the session, and its scope bounds
what the session may do). "Sign out everywhere" ends the sessions issued before it. Visitors who have not
signed in get a session without a user when they open the sign-in form, so that form is
CSRF-protected too; signing in issues a new nonce (no session fixation).

A CSRF token is an HMAC of the session's nonce under a second derived key: a form can only
be posted with the token of the session whose cookie comes with it. The cookie is HttpOnly and
SameSite=Lax, and Secure when the page is served over HTTPS.

This module never looks at requests beyond reading and writing the one cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ...core.hub.signing import TokenSigner


COOKIE = "dockyard_session"
LIFETIME = 12 * 3600


@dataclass(frozen=True)
class Session:
    user: str | None
    nonce: str
    expires: int
    password: str | None = None
    """Fingerprint of the user's password hash when the session was made."""
    token_id: str | None = None
    """The personal access token the user signed in with, if any."""
    issued: float = 0.0
    """When the session was made; "sign out everywhere" ends every session issued before."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, key: bytes) -> None:
        self._cookie_key = hmac.new(key, b"cookie", hashlib.sha256).digest()
        self._csrf_key = hmac.new(key, b"csrf", hashlib.sha256).digest()
        self._fingerprint_key = hmac.new(key, b"password", hashlib.sha256).digest()

    @classmethod
    def for_signer(cls, signer: TokenSigner) -> Sessions:
        return cls(signer.derive_key("web-session"))

    # -- making and reading sessions ----------------------------------------------------------
    def new(self, user: str | None = None, password_hash: str | None = None, token_id: str | None = None) -> Session:
        fingerprint = self.fingerprint(password_hash) if password_hash else None
        now = time.time()
        return Session(user, secrets.token_urlsafe(16), int(now) + LIFETIME, fingerprint, token_id, now)

    def fingerprint(self, password_hash: str) -> str:
        return hmac.new(self._fingerprint_key, password_hash.encode(), hashlib.sha256).hexdigest()[:32]

    def encode(self, session: Session) -> str:
        record = {"u": session.user, "n": session.nonce, "e": session.expires, "p": session.password, "t": session.token_id, "i": session.issued}
        payload = _b64encode(json.dumps(record, separators=(",", ":")).encode())
        signature = _b64encode(hmac.new(self._cookie_key, payload.encode(), hashlib.sha256).digest())
        return f"{payload}.{signature}"

    def decode(self, value: str | None) -> Session | None:
        """The session in a cookie value; None when it is missing, forged, malformed or expired."""
        if not value or value.count(".") != 1:
            return None
        payload, signature = value.split(".")
        expected = _b64encode(hmac.new(self._cookie_key, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            return None
        try:
            record = json.loads(_b64decode(payload))
            expires = int(record["e"])
            issued = float(record.get("i", expires - LIFETIME))
            session = Session(record["u"], str(record["n"]), expires, record.get("p"), record.get("t"), issued)
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        return session if session.expires > time.time() else None

    # -- CSRF ---------------------------------------------------------------------------------
    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session | None, token: str) -> bool:
        return session is not None and hmac.compare_digest(self.csrf_token(session), token)

    # -- the cookie ---------------------------------------------------------------------------
    def read(self, request: web.Request) -> Session | None:
        return self.decode(request.cookies.get(COOKIE))

    def write(self, request: web.Request, response: web.StreamResponse, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.encode(session),
            max_age=max(0, session.expires - int(time.time())),
            path="/",
            httponly=True,
            samesite="Lax",
            secure=is_https(request),
        )

    def clear(self, request: web.Request, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/", httponly=True, samesite="Lax", secure=is_https(request))


def is_https(request: web.Request) -> bool:
    """Served over HTTPS, directly or (by its own word) through a TLS-terminating proxy.

    Trusting the proxy header here only ever makes the cookie stricter."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
