"""Organizations (the `accounts` table, kind "org": the users' namespace) and their members'
roles (the `members` table, one row per member, so concurrent changes of different members
never overwrite each other)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..metadata import Database
from ..metadata.schema import accounts, members
from .errors import Conflict, NotFound
from .models import RESERVED_NAMES, Organization, Role, validate_account_name
from .records import account_kind, create_account, is_account_name


class Organizations:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, name: str) -> Organization | None:
        if not is_account_name(name):
            return None
        async with self.database.read() as connection:
            return await _load(connection, name)

    async def require(self, name: str) -> Organization:
        org = await self.get(name)
        if org is None:
            raise NotFound(f"no organization {name!r}")
        return org

    async def of_member(self, user: str) -> list[str]:
        """The organizations `user` has any role in."""
        async with self.database.read() as connection:
            return list((await connection.execute(select(members.c.organization).where(members.c.user == user))).scalars())

    async def create(self, name: str, owner: str) -> Organization:
        """A new organization with `owner` (an existing user) as its admin."""
        validate_account_name(name)
        if name in RESERVED_NAMES:
            raise Conflict(f"{name!r} is a reserved name")
        org = Organization(name=name, members={owner: "admin"})
        async with self.database.write() as connection:
            await _require_user(connection, owner)
            await create_account(self.database, connection, name, kind="org", admin=False, created=org.created)
            await connection.execute(members.insert().values(organization=name, user=owner, role="admin"))
        return org

    async def set_member(self, org_name: str, user: str, role: Role | None) -> Organization:
        """Give `user` a role in the organization, or (`role` None) remove them."""
        async with self.database.write() as connection:
            if await account_kind(connection, org_name) != "org":
                raise NotFound(f"no organization {org_name!r}")
            where = (members.c.organization == org_name, members.c.user == user)
            if role is None:
                if (await connection.execute(delete(members).where(*where))).rowcount == 0:
                    raise NotFound(f"{user!r} is not a member of {org_name!r}")
            else:
                await _require_user(connection, user)
                await connection.execute(
                    self.database.insert(members)
                    .values(organization=org_name, user=user, role=role)
                    .on_conflict_do_update(index_elements=[members.c.organization, members.c.user], set_={"role": role})
                )
            org = await _load(connection, org_name)
            assert org is not None
            if "admin" not in org.members.values():
                raise Conflict(f"{org_name!r} must keep at least one admin")  # rolls the change back
        return org


async def _load(connection: AsyncConnection, name: str) -> Organization | None:
    created = (await connection.execute(select(accounts.c.created).where(accounts.c.name == name, accounts.c.kind == "org"))).scalar()
    if created is None:
        return None
    rows = await connection.execute(select(members.c.user, members.c.role).where(members.c.organization == name).order_by(members.c.user))
    return Organization.model_construct(name=name, members={row.user: row.role for row in rows}, created=created)


async def _require_user(connection: AsyncConnection, name: str) -> None:
    if await account_kind(connection, name) != "user":
        raise NotFound(f"no user {name!r}")


