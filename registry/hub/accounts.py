"""Users, organizations, personal access tokens and repository settings, kept in storage.

Layout under the backend: `hub/users/<name>.json`, `hub/orgs/<name>.json`,
`hub/tokens/<user>/<id>.json`, `hub/refresh/<sha256 of token>.json`, and each repository's
settings beside its content at `repositories/<name>/_settings.json` (a name may be 255
characters, too long for any suffix in one file name). Users and organizations share one
namespace.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from typing import TypeVar

import bcrypt
from pydantic import BaseModel

from storage_backends import ObjectNotFound, StorageBackend

from .. import layout
from ..layout import CATALOG, catalog_name
from .search import SearchIndex
from .models import (
    RESERVED_NAMES,
    AccessToken,
    Organization,
    RepositorySettings,
    Role,
    User,
    Visibility,
    validate_account_name,
)

Model = TypeVar("Model", bound=BaseModel)
TOKEN_PREFIX = "dkp_"


class HubError(Exception):
    """A request the Hub refuses; `status` is the HTTP status to answer with."""

    status = 400


class NotFound(HubError):
    status = 404


class Conflict(HubError):
    status = 409


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Accounts:
    def __init__(self, storage: StorageBackend, default_visibility: Visibility = "private") -> None:
        self.storage = storage
        self.default_visibility = default_visibility
        self.search = SearchIndex(storage)

    # -- storage helpers ---------------------------------------------------------------------
    async def _load(self, key: str, model: type[Model]) -> Model | None:
        try:
            return model.model_validate_json(await self.storage.get_bytes(key))
        except ObjectNotFound:
            return None

    async def _save(self, key: str, record: BaseModel) -> None:
        await self.storage.put_bytes(key, record.model_dump_json().encode())

    # -- users -----------------------------------------------------------------------------
    async def _account(self, kind: str, name: str, model: type[Model]) -> Model | None:
        try:
            validate_account_name(name)  # also keeps any name from becoming a storage path
        except ValueError:
            return None
        return await self._load(layout.hub_account(kind, name), model)

    async def user(self, name: str) -> User | None:
        return await self._account("users", name, User)

    async def organization(self, name: str) -> Organization | None:
        return await self._account("orgs", name, Organization)

    async def create_user(self, name: str, password: str, *, admin: bool = False) -> User:
        validate_account_name(name)
        if name in RESERVED_NAMES:
            raise Conflict(f"{name!r} is a reserved name")
        if await self.user(name) or await self.organization(name):
            raise Conflict(f"the name {name!r} is taken")
        user = User(name=name, password_hash=await _hash_password(password), admin=admin)
        await self._save(layout.hub_user(name), user)
        return user

    async def set_password(self, name: str, password: str) -> None:
        user = await self.require_user(name)
        user.password_hash = await _hash_password(password)
        await self._save(layout.hub_user(name), user)

    async def require_user(self, name: str) -> User:
        user = await self.user(name)
        if user is None:
            raise NotFound(f"no user {name!r}")
        return user

    async def ensure_admin(self, name: str, password: str) -> None:
        """The configured initial admin exists with that password."""
        user = await self.user(name)
        if user is None:
            await self.create_user(name, password, admin=True)
            return
        if not user.admin or not await _check_password(password, user.password_hash):
            user.admin = True
            user.password_hash = await _hash_password(password)
            await self._save(layout.hub_user(name), user)

    async def users(self) -> list[str]:
        return [name.removesuffix(".json") for name in await self.storage.list(layout.HUB_USERS)]

    async def authenticate(self, name: str, secret: str) -> User | None:
        """The user whose password, or one of whose personal access tokens, is `secret`.

        The work is the same whether or not the user exists (a token lookup for a token, a
        bcrypt for a password), so timing tells nobody which names are taken."""
        user = await self.user(name)
        if secret.startswith(TOKEN_PREFIX):
            if not _is_account_name(name):
                return None  # no such name can exist
            matches = await self._token_matches(name, secret)  # the same lookup whether or not the user exists
            return user if user is not None and matches else None
        if user is None:
            await _hash_password(secret)
            return None
        return user if await _check_password(secret, user.password_hash) else None

    # -- personal access tokens ----------------------------------------------------------------
    async def create_token(self, user: str, name: str) -> tuple[AccessToken, str]:
        await self.require_user(user)
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = AccessToken(id=token_id, user=user, name=name, secret_hash=_sha256(secret))
        await self._save(layout.hub_token(user, token_id), record)
        return record, f"{TOKEN_PREFIX}{token_id}_{secret}"

    async def tokens(self, user: str) -> list[AccessToken]:
        names = await self.storage.list(layout.hub_tokens(user))
        records = await asyncio.gather(*(self._load(f"{layout.hub_tokens(user)}/{name}", AccessToken) for name in names))
        return [record for record in records if record is not None]

    async def revoke_token(self, user: str, token_id: str) -> None:
        if not token_id.isalnum() or not await self.storage.delete(layout.hub_token(user, token_id)):
            raise NotFound(f"user {user!r} has no token {token_id!r}")

    async def _token_matches(self, user: str, presented: str) -> bool:
        token_id, _, secret = presented.removeprefix(TOKEN_PREFIX).partition("_")
        if not token_id.isalnum() or not secret:
            return False
        record = await self._load(layout.hub_token(user, token_id), AccessToken)
        return record is not None and hmac.compare_digest(record.secret_hash, _sha256(secret))

    # -- refresh tokens (OAuth2 offline tokens) --------------------------------------------------
    async def create_refresh_token(self, user: User, signed_in_with: str) -> str:
        """A refresh token for `user`, who proved themself with `signed_in_with` (a password or
        a personal access token): it stops working when the password changes or that access
        token is revoked."""
        token = secrets.token_urlsafe(32)
        record = {"user": user.name, "password": _sha256(user.password_hash), "token_id": token_id_of(signed_in_with)}
        await self.storage.put_bytes(layout.hub_refresh_token(_sha256(token)), json.dumps(record).encode())
        return token

    async def refresh_token_user(self, token: str) -> User | None:
        key = layout.hub_refresh_token(_sha256(token))
        try:
            record = json.loads(await self.storage.get_bytes(key))
        except ObjectNotFound:
            return None
        user = await self.user(record["user"])
        if user is None or record.get("password") != _sha256(user.password_hash):
            await self.storage.delete(key)  # issued before the password changed (or the user went)
            return None
        token_id = record.get("token_id")
        if token_id and await self._load(layout.hub_token(user.name, token_id), AccessToken) is None:
            await self.storage.delete(key)  # the access token it came from was revoked
            return None
        return user

    # -- web sessions ended by signing out --------------------------------------------------------
    async def end_session(self, nonce: str, expires: int) -> None:
        """Mark a web session as signed out (until it would have expired anyway)."""
        await self.storage.put_bytes(layout.hub_ended_session(_sha256(nonce)), str(expires).encode())

    async def session_ended(self, nonce: str) -> bool:
        return await self.storage.exists(layout.hub_ended_session(_sha256(nonce)))

    # -- organizations ---------------------------------------------------------------------
    async def create_organization(self, name: str, owner: str) -> Organization:
        validate_account_name(name)
        if name in RESERVED_NAMES:
            raise Conflict(f"{name!r} is a reserved name")
        if await self.user(name) or await self.organization(name):
            raise Conflict(f"the name {name!r} is taken")
        await self.require_user(owner)
        org = Organization(name=name, members={owner: "admin"})
        await self._save(layout.hub_organization(name), org)
        return org

    async def require_organization(self, name: str) -> Organization:
        org = await self.organization(name)
        if org is None:
            raise NotFound(f"no organization {name!r}")
        return org

    async def set_member(self, org_name: str, user: str, role: Role | None) -> Organization:
        org = await self.require_organization(org_name)
        if role is None:
            if org.members.pop(user, None) is None:
                raise NotFound(f"{user!r} is not a member of {org_name!r}")
        else:
            await self.require_user(user)
            org.members[user] = role
        await self._save(layout.hub_organization(org_name), org)
        return org

    # -- repository settings ---------------------------------------------------------------
    async def repository(self, name: str) -> RepositorySettings | None:
        return await self._load(layout.repository_settings(name), RepositorySettings)

    async def save_repository(self, settings: RepositorySettings) -> None:
        await self._save(layout.repository_settings(settings.name), settings)
        await self.search.update(settings)

    async def all_repositories(self) -> list[RepositorySettings]:
        """Settings of every repository in the catalog (for re-indexing; walks them all)."""
        names = [catalog_name(key) for key in await self.storage.list(CATALOG)]
        records = await asyncio.gather(*(self.repository(name) for name in names))
        return [record for record in records if record is not None]

    async def ensure_repository(self, name: str) -> RepositorySettings:
        """Settings of a repository, created with the default visibility on first push."""
        settings = await self.repository(name)
        if settings is None:
            settings = RepositorySettings(name=name, visibility=self.default_visibility)
            await self.save_repository(settings)
        return settings


def token_id_of(secret: str) -> str | None:
    """The ID of a personal access token (`dkp_<id>_<secret>`); None for a password."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token_id = secret.removeprefix(TOKEN_PREFIX).partition("_")[0]
    return token_id if token_id.isalnum() else None


def _is_account_name(name: str) -> bool:
    try:
        validate_account_name(name)
    except ValueError:
        return False
    return True


async def _hash_password(password: str) -> str:
    return (await asyncio.to_thread(bcrypt.hashpw, password.encode()[:72], bcrypt.gensalt(rounds=10))).decode()


async def _check_password(password: str, hashed: str) -> bool:
    return await asyncio.to_thread(bcrypt.checkpw, password.encode()[:72], hashed.encode())
