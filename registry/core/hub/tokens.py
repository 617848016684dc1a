"""Personal access tokens, refresh tokens, and web sessions ended by signing out.

Access tokens (`dkp_<id>_<secret>`) are kept as the SHA-256 of their secret at
`hub/tokens/<user>/<id>.json`. A refresh token (OAuth2 offline token) is kept at
`hub/refresh/<sha256 of token>.json`, bound to the password hash (and access token) it was
issued with, so it dies with a password change or that token's revocation.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets

from storage_backends import ObjectNotFound

from .. import layout
from .errors import NotFound
from .models import AccessToken, User
from .records import Records, sha256

TOKEN_PREFIX = "dkp_"


class Tokens:
    def __init__(self, records: Records) -> None:
        self.records = records
        self.storage = records.storage

    # -- personal access tokens ----------------------------------------------------------------
    async def create(self, user: str, name: str) -> tuple[AccessToken, str]:
        """A new token of an existing user: its record, and the secret (shown once)."""
        if await self.records.account("users", user, User) is None:
            raise NotFound(f"no user {user!r}")
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = AccessToken(id=token_id, user=user, name=name, secret_hash=sha256(secret))
        await self.records.save(layout.hub_token(user, token_id), record)
        return record, f"{TOKEN_PREFIX}{token_id}_{secret}"

    async def of(self, user: str) -> list[AccessToken]:
        names = await self.storage.list(layout.hub_tokens(user))
        records = await asyncio.gather(*(self.records.load(f"{layout.hub_tokens(user)}/{name}", AccessToken) for name in names))
        return [record for record in records if record is not None]

    async def exists(self, user: str, token_id: str) -> bool:
        return token_id.isalnum() and await self.storage.exists(layout.hub_token(user, token_id))

    async def revoke(self, user: str, token_id: str) -> None:
        if not token_id.isalnum() or not await self.storage.delete(layout.hub_token(user, token_id)):
            raise NotFound(f"user {user!r} has no token {token_id!r}")

    async def matches(self, user: str, presented: str) -> bool:
        """`presented` is a live access token of `user` (one lookup, whether or not the user exists)."""
        token_id, _, secret = presented.removeprefix(TOKEN_PREFIX).partition("_")
        if not token_id.isalnum() or not secret:
            return False
        record = await self.records.load(layout.hub_token(user, token_id), AccessToken)
        return record is not None and hmac.compare_digest(record.secret_hash, sha256(secret))

    # -- refresh tokens (OAuth2 offline tokens) --------------------------------------------------
    async def create_refresh(self, user: User, signed_in_with: str) -> str:
        """A refresh token for `user`, who proved themself with `signed_in_with` (a password or
        a personal access token): it stops working when the password changes or that access
        token is revoked."""
        token = secrets.token_urlsafe(32)
        record = {"user": user.name, "password": sha256(user.password_hash), "token_id": token_id_of(signed_in_with)}
        await self.storage.put_bytes(layout.hub_refresh_token(sha256(token)), json.dumps(record).encode())
        return token

    async def refresh_user(self, token: str) -> User | None:
        """The user a refresh token still speaks for; None (and the token forgotten) otherwise."""
        key = layout.hub_refresh_token(sha256(token))
        try:
            record = json.loads(await self.storage.get_bytes(key))
        except ObjectNotFound:
            return None
        user = await self.records.account("users", record["user"], User)
        if user is None or record.get("password") != sha256(user.password_hash):
            await self.storage.delete(key)  # issued before the password changed (or the user went)
            return None
        token_id = record.get("token_id")
        if token_id and await self.records.load(layout.hub_token(user.name, token_id), AccessToken) is None:
            await self.storage.delete(key)  # the access token it came from was revoked
            return None
        return user

    # -- web sessions ended by signing out --------------------------------------------------------
    async def end_session(self, nonce: str, expires: int) -> None:
        """Mark a web session as signed out (until it would have expired anyway)."""
        await self.storage.put_bytes(layout.hub_ended_session(sha256(nonce)), str(expires).encode())

    async def session_ended(self, nonce: str) -> bool:
        return await self.storage.exists(layout.hub_ended_session(sha256(nonce)))


def token_id_of(secret: str) -> str | None:
    """The ID of a personal access token (`dkp_<id>_<secret>`); None for a password."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token_id = secret.removeprefix(TOKEN_PREFIX).partition("_")[0]
    return token_id if token_id.isalnum() else None
