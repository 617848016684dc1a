"""Users and their passwords (bcrypt) in the `accounts` table (kind "user")."""

from __future__ import annotations

import asyncio
import time

import bcrypt

from ..metadata import Database, Row
from .errors import Conflict, NotFound
from .models import RESERVED_NAMES, User, validate_account_name
from .records import create_account, is_account_name
from .tokens import TOKEN_PREFIX, Tokens

USER = "SELECT name, password_hash, admin, created, sessions_after FROM accounts WHERE name = :name AND kind = 'user'"


def _user(row: Row) -> User:
    return User.model_construct(
        name=row["name"], password_hash=row["password_hash"], admin=bool(row["admin"]), created=row["created"],
        sessions_after=row["sessions_after"], token_scope=None,
    )  # fmt: skip


class Users:
    def __init__(self, database: Database, tokens: Tokens) -> None:
        self.database = database
        self.tokens = tokens

    async def get(self, name: str) -> User | None:
        if not is_account_name(name):
            return None
        async with self.database.read() as connection:
            row = await connection.fetch_one(USER, {"name": name})
        return _user(row) if row else None

    async def require(self, name: str) -> User:
        user = await self.get(name)
        if user is None:
            raise NotFound(f"no user {name!r}")
        return user

    async def names(self) -> list[str]:
        async with self.database.read() as connection:
            names: list[str] = await connection.scalars("SELECT name FROM accounts WHERE kind = 'user' ORDER BY name")
            return names

    async def create(self, name: str, password: str, *, admin: bool = False) -> User:
        validate_account_name(name)
        if name in RESERVED_NAMES:
            raise Conflict(f"{name!r} is a reserved name")
        user = User(name=name, password_hash=await hash_password(password), admin=admin)
        async with self.database.write() as connection:
            await create_account(connection, name, kind="user", password_hash=user.password_hash, admin=admin, created=user.created)
        return user

    async def set_password(self, name: str, password: str) -> None:
        await self.require(name)
        password_hash = await hash_password(password)
        async with self.database.write() as connection:
            changed = await connection.execute(
                "UPDATE accounts SET password_hash = :password_hash WHERE name = :name AND kind = 'user'", {"name": name, "password_hash": password_hash}
            )
        if changed == 0:
            raise NotFound(f"no user {name!r}")

    async def end_sessions(self, name: str) -> None:
        """Sign out everywhere: every web session of the user issued until now ends, and so do
        the refresh tokens clients hold. Passwords and access tokens keep working."""
        async with self.database.write() as connection:
            changed = await connection.execute(
                "UPDATE accounts SET sessions_after = :now WHERE name = :name AND kind = 'user'", {"name": name, "now": time.time()}
            )
            if changed == 0:
                raise NotFound(f"no user {name!r}")
            await connection.execute('DELETE FROM refresh_tokens WHERE "user" = :name', {"name": name})

    async def ensure_admin(self, name: str, password: str) -> None:
        """The configured initial admin exists with that password (replicas starting together
        may both try: the loser of the insert updates instead)."""
        user = await self.get(name)
        if user is None:
            try:
                await self.create(name, password, admin=True)
                return
            except Conflict:
                user = await self.get(name)
                if user is None:
                    raise
        if not user.admin or not await check_password(password, user.password_hash):
            password_hash = await hash_password(password)
            async with self.database.write() as connection:
                await connection.execute(
                    "UPDATE accounts SET admin = :admin, password_hash = :password_hash WHERE name = :name",
                    {"name": name, "admin": True, "password_hash": password_hash},
                )

    async def authenticate(self, name: str, secret: str) -> User | None:
        """The user whose password, or one of whose personal access tokens, is `secret`.

        The work is the same whether or not the user exists (a token lookup for a token, a
        bcrypt for a password), so timing tells nobody which names are taken."""
        user = await self.get(name)
        if secret.startswith(TOKEN_PREFIX):
            if not is_account_name(name):
                return None  # no such name can exist
            scope = await self.tokens.scope_of(name, secret)  # the same lookup whether or not the user exists
            return user.model_copy(update={"token_scope": scope}) if user is not None and scope is not None else None
        if user is None:
            await hash_password(secret)
            return None
        return user if await check_password(secret, user.password_hash) else None


async def hash_password(password: str) -> str:
    return (await asyncio.to_thread(bcrypt.hashpw, password.encode()[:72], bcrypt.gensalt(rounds=10))).decode()


async def check_password(password: str, hashed: str) -> bool:
    return await asyncio.to_thread(bcrypt.checkpw, password.encode()[:72], hashed.encode())
