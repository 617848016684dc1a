"""Personal access tokens, refresh tokens, and web sessions ended by signing out.

Access tokens (`dkp_<id>_<secret>`) are kept as the SHA-256 of their secret. A refresh token
(OAuth2 offline token) is kept as its SHA-256, bound to the password hash (and access token)
it was issued with, so it dies with a password change or that token's revocation. Every check
reads the database, so a revocation holds on every replica at once.
"""

from __future__ import annotations

import hmac
import secrets
import time

from ..metadata import Database
from ..metadata.sql import insert_into
from .errors import NotFound
from .models import AccessToken, TokenScope, User
from .records import account_kind, sha256

TOKEN_PREFIX = "dkp_"
LAST_USED_RESOLUTION = 60.0
"""Seconds: a token's `last_used` is rewritten at most this often (not on every request)."""
TOKEN_COLUMNS = 'id, "user", name, secret_hash, created, last_used, scope'


class Tokens:
    def __init__(self, database: Database) -> None:
        self.database = database

    # -- personal access tokens ----------------------------------------------------------------
    async def create(self, user: str, name: str, scope: TokenScope = "admin") -> tuple[AccessToken, str]:
        """A new token of an existing user: its record, and the secret (shown once)."""
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = AccessToken(id=token_id, user=user, name=name, secret_hash=sha256(secret), scope=scope)
        async with self.database.write() as connection:
            if await account_kind(connection, user) != "user":
                raise NotFound(f"no user {user!r}")
            row = record.model_dump()
            await connection.execute(insert_into("access_tokens", list(row)), row)
        return record, f"{TOKEN_PREFIX}{token_id}_{secret}"

    async def of(self, user: str) -> list[AccessToken]:
        async with self.database.read() as connection:
            rows = await connection.fetch(f'SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE "user" = :user ORDER BY created', {"user": user})
            return [AccessToken.model_construct(**row) for row in rows]

    async def revoke(self, user: str, token_id: str) -> None:
        async with self.database.write() as connection:
            removed = await connection.execute('DELETE FROM access_tokens WHERE "user" = :user AND id = :id', {"user": user, "id": token_id})
            if removed == 0:
                raise NotFound(f"user {user!r} has no token {token_id!r}")
            # refresh tokens issued for it die with it
            await connection.execute("DELETE FROM refresh_tokens WHERE access_token = :id", {"id": token_id})

    async def get(self, user: str, token_id: str) -> AccessToken | None:
        async with self.database.read() as connection:
            row = await connection.fetch_one(f'SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE "user" = :user AND id = :id', {"user": user, "id": token_id})
        return AccessToken.model_construct(**row) if row else None

    async def scope_of(self, user: str, presented: str) -> TokenScope | None:
        """The scope of `presented` when it is a live access token of `user`, else None (one
        lookup, whether or not the user exists)."""
        token_id, _, secret = presented.removeprefix(TOKEN_PREFIX).partition("_")
        if not token_id.isalnum() or not secret:
            return None
        async with self.database.read() as connection:
            row = await connection.fetch_one(
                'SELECT secret_hash, last_used, scope FROM access_tokens WHERE "user" = :user AND id = :id', {"user": user, "id": token_id}
            )
        if row is None or not hmac.compare_digest(row["secret_hash"], sha256(secret)):
            return None
        now = time.time()
        if row["last_used"] is None or row["last_used"] < now - LAST_USED_RESOLUTION:
            async with self.database.write() as connection:
                await connection.execute("UPDATE access_tokens SET last_used = :now WHERE id = :id", {"id": token_id, "now": now})
        scope: TokenScope = row["scope"]
        return scope

    # -- refresh tokens (OAuth2 offline tokens) --------------------------------------------------
    async def create_refresh(self, user: User, signed_in_with: str) -> str:
        """A refresh token for `user`, who proved themself with `signed_in_with` (a password or
        a personal access token): it stops working when the password changes or that access
        token is revoked."""
        token = secrets.token_urlsafe(32)
        async with self.database.write() as connection:
            await connection.execute(
                'INSERT INTO refresh_tokens (token_hash, "user", password, access_token, created) '
                "VALUES (:token_hash, :user, :password, :access_token, :created)",
                {
                    "token_hash": sha256(token), "user": user.name, "password": sha256(user.password_hash),
                    "access_token": token_id_of(signed_in_with), "created": time.time(),
                },
            )  # fmt: skip
        return token

    async def refresh_user(self, token: str) -> User | None:
        """The user a refresh token still speaks for; None (and the token forgotten) otherwise."""
        key = sha256(token)
        async with self.database.read() as connection:
            row = await connection.fetch_one(
                'SELECT refresh_tokens."user", refresh_tokens.password, refresh_tokens.access_token, accounts.password_hash, accounts.admin, '
                "accounts.created AS user_created, accounts.sessions_after "
                'FROM refresh_tokens JOIN accounts ON accounts.name = refresh_tokens."user" WHERE refresh_tokens.token_hash = :key',
                {"key": key},
            )
            scope: TokenScope | None = None
            if row is not None and row["access_token"] is not None:
                scope = await connection.scalar("SELECT scope FROM access_tokens WHERE id = :id", {"id": row["access_token"]})
            live_access_token = row is not None and (row["access_token"] is None or scope is not None)
        if row is None:
            return None
        if row["password"] != sha256(row["password_hash"]) or not live_access_token:
            async with self.database.write() as connection:  # issued before the password changed, or its access token was revoked
                await connection.execute("DELETE FROM refresh_tokens WHERE token_hash = :key", {"key": key})
            return None
        return User.model_construct(
            name=row["user"], password_hash=row["password_hash"], admin=bool(row["admin"]), created=row["user_created"],
            sessions_after=row["sessions_after"], token_scope=scope,
        )  # fmt: skip

    # -- web sessions ended by signing out --------------------------------------------------------
    async def end_session(self, nonce: str, expires: int) -> None:
        """Mark a web session as signed out (until it would have expired anyway)."""
        async with self.database.write() as connection:
            await connection.execute("DELETE FROM ended_sessions WHERE expires < :now", {"now": time.time()})
            await connection.execute(
                "INSERT INTO ended_sessions (nonce_hash, expires) VALUES (:nonce_hash, :expires) ON CONFLICT DO NOTHING",
                {"nonce_hash": sha256(nonce), "expires": float(expires)},
            )

    async def session_ended(self, nonce: str) -> bool:
        async with self.database.read() as connection:
            return await connection.fetch_one("SELECT nonce_hash FROM ended_sessions WHERE nonce_hash = :key", {"key": sha256(nonce)}) is not None


def token_id_of(secret: str) -> str | None:
    """The ID of a personal access token (`dkp_<id>_<secret>`); None for a password."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token_id = secret.removeprefix(TOKEN_PREFIX).partition("_")[0]
    return token_id if token_id.isalnum() else None
