"""Organizations and their members' roles, at `hub/orgs/<name>.json` (the users' namespace)."""

from __future__ import annotations

from .. import layout
from .errors import Conflict, NotFound
from .models import RESERVED_NAMES, Organization, Role, User, validate_account_name
from .records import Records


class Organizations:
    def __init__(self, records: Records) -> None:
        self.records = records

    async def get(self, name: str) -> Organization | None:
        return await self.records.account("orgs", name, Organization)

    async def require(self, name: str) -> Organization:
        org = await self.get(name)
        if org is None:
            raise NotFound(f"no organization {name!r}")
        return org

    async def create(self, name: str, owner: str) -> Organization:
        """A new organization with `owner` (an existing user) as its admin."""
        validate_account_name(name)
        if name in RESERVED_NAMES:
            raise Conflict(f"{name!r} is a reserved name")
        if await self.records.name_taken(name):
            raise Conflict(f"the name {name!r} is taken")
        await self._require_user(owner)
        org = Organization(name=name, members={owner: "admin"})
        await self.records.save(layout.hub_organization(name), org)
        return org

    async def set_member(self, org_name: str, user: str, role: Role | None) -> Organization:
        """Give `user` a role in the organization, or (`role` None) remove them."""
        org = await self.require(org_name)
        if role is None:
            if org.members.pop(user, None) is None:
                raise NotFound(f"{user!r} is not a member of {org_name!r}")
        else:
            await self._require_user(user)
            org.members[user] = role
        await self.records.save(layout.hub_organization(org_name), org)
        return org

    async def _require_user(self, name: str) -> None:
        if await self.records.account("users", name, User) is None:
            raise NotFound(f"no user {name!r}")
