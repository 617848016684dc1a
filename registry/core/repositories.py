"""Repositories as a whole: existence, the catalog, and tag listing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from storage_backends import ObjectNotFound, StorageBackend

from . import layout
from .errors import NameUnknown

REPOSITORY_PARTS = ("_manifests/tags", "_manifests", "_referrers", "_layers", "_uploads")
"""A repository's own storage, in the order a delete removes it."""


@dataclass(frozen=True)
class Page:
    items: list[str]
    more: bool
    """True when entries remain after the last one returned."""


class Repositories:
    def __init__(self, storage: StorageBackend, on_created: Callable[[str], None] | None = None) -> None:
        self.storage = storage
        self._on_created = on_created

    async def mark_exists(self, name: str, *, with_markers: Sequence[str] = ()) -> None:
        """The repository is in the catalog, and so are `with_markers` (its own links), all in
        one storage call; a repository new to the catalog is announced to `on_created`."""
        *_, created = await self.storage.ensure_markers([*with_markers, layout.catalog_entry(name)])
        if created and self._on_created is not None:
            self._on_created(name)

    async def exists(self, name: str) -> bool:
        return await self.storage.exists(layout.catalog_entry(name))

    async def delete(self, name: str) -> None:
        """Remove a repository: its tags first (so nothing resolves any more), then its manifests,
        referrers, layer links and uploads, and its catalog entry last, so a crash midway leaves a
        listed repository to delete again (deleting what is already gone is no error). Blobs stay
        until `gc` finds nothing else uses them; repositories nested below the name (`name/sub`)
        are untouched."""
        for part in REPOSITORY_PARTS:
            await self.storage.delete_tree(f"{layout.repository(name)}/{part}")
        await self.storage.delete(layout.catalog_entry(name))

    async def require(self, name: str) -> None:
        if not await self.exists(name):
            raise NameUnknown(f"repository {name!r} is not known to this registry", detail={"name": name})

    async def catalog(self, limit: int | None, last: str | None, visible: Callable[[str], Awaitable[bool]] | None = None) -> Page:
        """Repository names after `last`; with `visible`, only those it accepts."""
        start_after = layout.catalog_key(last) if last else None
        batch = None if limit is None else limit + 1
        names: list[str] = []
        while True:
            keys = await self.storage.list(layout.CATALOG, start_after=start_after, limit=batch)
            for key in keys:
                name = layout.catalog_name(key)
                if visible is None or await visible(name):
                    names.append(name)
            if batch is None or len(keys) < batch or len(names) > (limit or 0):
                return _page(names, limit)
            start_after = keys[-1]

    async def tags(self, name: str, limit: int | None, last: str | None) -> Page:
        await self.require(name)
        tags = await self.storage.list(layout.tags_dir(name), start_after=last, limit=None if limit is None else limit + 1)
        return _page(tags, limit)

    async def tag_pushed(self, name: str, tag: str) -> float | None:
        """When the tag was last pushed (the time its pointer was written); None when it is not there."""
        try:
            return (await self.storage.stat(layout.tag(name, tag))).modified
        except ObjectNotFound:
            return None

    async def tag_times(self, name: str, concurrency: int = 16) -> list[tuple[str, float]]:
        """Every tag of the repository with the time it was last pushed."""
        names = await self.storage.list(layout.tags_dir(name))
        slots = asyncio.Semaphore(concurrency)

        async def pushed(tag: str) -> float | None:
            async with slots:
                return await self.tag_pushed(name, tag)

        times = await asyncio.gather(*(pushed(tag) for tag in names))
        return [(tag, time) for tag, time in zip(names, times) if time is not None]  # None: deleted meanwhile


def _page(items: list[str], limit: int | None) -> Page:
    if limit is not None and len(items) > limit:
        return Page(items[:limit], True)
    return Page(items, False)
