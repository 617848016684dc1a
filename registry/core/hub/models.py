"""Hub records as the metadata database holds them and the admin API exchanges them."""

from __future__ import annotations

import re
import time
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from .errors import InvalidAccountName

Role = Literal["read", "write", "admin"]
TokenScope = Literal["read", "write", "delete", "admin"]
"""What a personal access token may do, as Docker Hub's token scopes: read (pull), write (pull
and push), delete (and delete), admin (everything its user may, account management included)."""
Visibility = Literal["public", "private"]
ACCOUNT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
RESERVED_NAMES = frozenset({"library", "v1", "v2", "api", "token"})


def validate_account_name(value: str) -> str:
    if not 2 <= len(value) <= 64 or not ACCOUNT_NAME.match(value):
        raise InvalidAccountName(f"invalid account name {value!r}: 2-64 lowercase letters, digits and . _ - separators")
    return value


class Account(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return validate_account_name(value)


class User(Account):
    password_hash: str
    admin: bool = False
    created: float = Field(default_factory=time.time)
    sessions_after: float | None = None
    """Web sessions issued before this moment are ended ("sign out everywhere")."""
    token_scope: TokenScope | None = None
    """Set when this user proved themself with a personal access token: the most it may do.
    Never stored; None for a password."""

    @property
    def manages_account(self) -> bool:
        """May change the account itself (password, tokens, organizations): a password or an admin-scoped token."""
        return self.token_scope in (None, "admin")


class Organization(Account):
    members: dict[str, Role] = {}
    created: float = Field(default_factory=time.time)


class AccessToken(BaseModel):
    """A personal access token; only its hash is stored."""

    id: str
    user: str
    name: str
    secret_hash: str
    created: float = Field(default_factory=time.time)
    last_used: float | None = None
    scope: TokenScope = "admin"


class RepositorySettings(BaseModel):
    name: str
    visibility: Visibility = "private"
    description: str = ""
    full_description: str = ""
    star_count: int = 0
    pull_count: int = 0
    last_pulled: float | None = None
    push_count: int = 0
    pushed: float | None = None
    created: float = Field(default_factory=time.time)


class Webhook(BaseModel):
    id: str
    url: str
    events: list[Literal["push", "delete"]] = ["push", "delete"]
    secret: str | None = Field(default=None, description="signs deliveries (HMAC-SHA256); never shown")
    created: float = Field(default_factory=time.time)
