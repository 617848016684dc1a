"""What the Hub's stores share: SHA-256 of secrets, account names, and the one way an account
(user or organization, one namespace) is created."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..metadata import Database
from ..metadata.schema import accounts
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


async def create_account(database: Database, connection: AsyncConnection, name: str, **values: object) -> None:
    """Insert an account; the primary key is what keeps a name to one user or organization."""
    inserted = await connection.execute(database.insert(accounts).values(name=name, **values).on_conflict_do_nothing())
    if inserted.rowcount == 0:
        raise Conflict(f"the name {name!r} is taken")


async def account_kind(connection: AsyncConnection, name: str) -> str | None:
    return (await connection.execute(select(accounts.c.kind).where(accounts.c.name == name))).scalar()
