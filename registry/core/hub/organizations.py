"""Organizations (the `accounts` table, kind "org": the users' namespace) and their members'
roles (the `members` table, one row per member, so concurrent changes of different members
never overwrite each other)."""

from __future__ import annotations

from ..metadata import Connection, Database
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
            organizations: list[str] = await connection.scalars('SELECT organization FROM members WHERE "user" = :user', {"user": user})
            return organizations

    async def create(self, name: str, owner: str) -> Organization:
        """A new organization with `owner` (an existing user) as its admin."""
        validate_account_name(name)
        if name in RESERVED_NAMES:
            raise Conflict(f"{name!r} is a reserved name")
        org = Organization(name=name, members={owner: "admin"})
        async with self.database.write() as connection:
            await _require_user(connection, owner)
            await create_account(connection, name, kind="org", admin=False, created=org.created)
            await connection.execute(
                'INSERT INTO members (organization, "user", role) VALUES (:organization, :user, :role)', {"organization": name, "user": owner, "role": "admin"}
            )
        return org

    async def set_member(self, org_name: str, user: str, role: Role | None) -> Organization:
        """Give `user` a role in the organization, or (`role` None) remove them."""
        async with self.database.write() as connection:
            if await account_kind(connection, org_name) != "org":
                raise NotFound(f"no organization {org_name!r}")
            member = {"organization": org_name, "user": user, "role": role}
            if role is None:
                if await connection.execute('DELETE FROM members WHERE organization = :organization AND "user" = :user', member) == 0:
                    raise NotFound(f"{user!r} is not a member of {org_name!r}")
            else:
                await _require_user(connection, user)
                await connection.execute(
                    'INSERT INTO members (organization, "user", role) VALUES (:organization, :user, :role) '
                    'ON CONFLICT (organization, "user") DO UPDATE SET role = excluded.role',
                    member,
                )
            org = await _load(connection, org_name)
            assert org is not None
            if "admin" not in org.members.values():
                raise Conflict(f"{org_name!r} must keep at least one admin")  # rolls the change back
        return org


async def _load(connection: Connection, name: str) -> Organization | None:
    created = await connection.scalar("SELECT created FROM accounts WHERE name = :name AND kind = 'org'", {"name": name})
    if created is None:
        return None
    rows = await connection.fetch('SELECT "user", role FROM members WHERE organization = :name ORDER BY "user"', {"name": name})
    return Organization.model_construct(name=name, members={row["user"]: row["role"] for row in rows}, created=created)


async def _require_user(connection: Connection, name: str) -> None:
    if await account_kind(connection, name) != "user":
        raise NotFound(f"no user {name!r}")
