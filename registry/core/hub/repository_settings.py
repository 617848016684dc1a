"""Each repository's Hub settings (visibility, description) and stars, kept beside its content
at `repositories/<name>/_settings.json` (a name may be 255 characters, too long for any suffix
in one file name); every change also updates the search index."""

from __future__ import annotations

import asyncio

from .. import layout
from ..layout import CATALOG, catalog_name
from .models import RepositorySettings, Visibility
from .records import Records
from .search import SearchIndex


class RepositorySettingsStore:
    def __init__(self, records: Records, search: SearchIndex, default_visibility: Visibility = "private") -> None:
        self.records = records
        self.search = search
        self.default_visibility = default_visibility

    async def get(self, name: str) -> RepositorySettings | None:
        return await self.records.load(layout.repository_settings(name), RepositorySettings)

    async def save(self, settings: RepositorySettings) -> None:
        await self.records.save(layout.repository_settings(settings.name), settings)
        await self.search.update(settings)

    async def ensure(self, name: str) -> RepositorySettings:
        """Settings of a repository, created with the default visibility on first push."""
        settings = await self.get(name)
        if settings is None:
            settings = RepositorySettings(name=name, visibility=self.default_visibility)
            await self.save(settings)
        return settings

    async def star(self, settings: RepositorySettings, user: str, starred: bool) -> RepositorySettings:
        """`user` stars (or un-stars) the repository."""
        if starred and user not in settings.stars:
            settings.stars.append(user)
        elif not starred and user in settings.stars:
            settings.stars.remove(user)
        await self.save(settings)
        return settings

    async def all(self) -> list[RepositorySettings]:
        """Settings of every repository in the catalog (for re-indexing; walks them all)."""
        names = [catalog_name(key) for key in await self.records.storage.list(CATALOG)]
        records = await asyncio.gather(*(self.get(name) for name in names))
        return [record for record in records if record is not None]
