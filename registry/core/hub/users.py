"""Users and their passwords (bcrypt), at `hub/users/<name>.json`."""

from __future__ import annotations

import asyncio

import bcrypt

from .. import layout
from .errors import Conflict, NotFound
from .models import RESERVED_NAMES, User, validate_account_name
from .records import Records, is_account_name
from .tokens import TOKEN_PREFIX, Tokens


class Users:
    def __init__(self, records: Records, tokens: Tokens) -> None:
        self.records = records
        self.tokens = tokens

    async def get(self, name: str) -> User | None:
        return await self.records.account("users", name, User)

    async def require(self, name: str) -> User:
        user = await self.get(name)
        if user is None:
            raise NotFound(f"no user {name!r}")
        return user

    async def names(self) -> list[str]:
        return [name.removesuffix(".json") for name in await self.records.storage.list(layout.HUB_USERS)]

    async def create(self, name: str, password: str, *, admin: bool = False) -> User:
        validate_account_name(name)
        if name in RESERVED_NAMES:
            raise Conflict(f"{name!r} is a reserved name")
        if await self.records.name_taken(name):
            raise Conflict(f"the name {name!r} is taken")
        user = User(name=name, password_hash=await hash_password(password), admin=admin)
        await self.records.save(layout.hub_user(name), user)
        return user

    async def set_password(self, name: str, password: str) -> None:
        user = await self.require(name)
        user.password_hash = await hash_password(password)
        await self.records.save(layout.hub_user(name), user)

    async def ensure_admin(self, name: str, password: str) -> None:
        """The configured initial admin exists with that password."""
        user = await self.get(name)
        if user is None:
            await self.create(name, password, admin=True)
            return
        if not user.admin or not await check_password(password, user.password_hash):
            user.admin = True
            user.password_hash = await hash_password(password)
            await self.records.save(layout.hub_user(name), user)

    async def authenticate(self, name: str, secret: str) -> User | None:
        """The user whose password, or one of whose personal access tokens, is `secret`.

        The work is the same whether or not the user exists (a token lookup for a token, a
        bcrypt for a password), so timing tells nobody which names are taken."""
        user = await self.get(name)
        if secret.startswith(TOKEN_PREFIX):
            if not is_account_name(name):
                return None  # no such name can exist
            matches = await self.tokens.matches(name, secret)  # the same lookup whether or not the user exists
            return user if user is not None and matches else None
        if user is None:
            await hash_password(secret)
            return None
        return user if await check_password(secret, user.password_hash) else None


async def hash_password(password: str) -> str:
    return (await asyncio.to_thread(bcrypt.hashpw, password.encode()[:72], bcrypt.gensalt(rounds=10))).decode()


async def check_password(password: str, hashed: str) -> bool:
    return await asyncio.to_thread(bcrypt.checkpw, password.encode()[:72], hashed.encode())
