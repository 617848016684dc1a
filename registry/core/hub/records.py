"""What the Hub's stores share: SHA-256 of secrets, account names, and the one way an account
(user or organization, one namespace) is created."""

from __future__ import annotations

import hashlib

from ..metadata import Connection
from ..metadata.sql import insert_into
from .errors import Conflict
from .models import validate_account_name


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_account_name(name: str) -> bool:
    try:
        validate_account_name(name)
    except ValueError:
        return False
    return True


async def create_account(connection: Connection, name: str, **values: object) -> None:
    """Insert an account; the primary key is what keeps a name to one user or organization."""
    row = {"name": name, **values}
    inserted = await connection.execute(f"{insert_into('accounts', list(row))} ON CONFLICT DO NOTHING", row)
    if inserted == 0:
        raise Conflict(f"the name {name!r} is taken")


async def account_kind(connection: Connection, name: str) -> str | None:
    kind: str | None = await connection.scalar("SELECT kind FROM accounts WHERE name = :name", {"name": name})
    return kind
