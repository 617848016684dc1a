"""Blobs of repositories: content stored once per digest, linked into each repository.

A blob is served from a repository only while that repository links it. Deleting a blob from
a repository removes the link, never the shared content: content is reclaimed only by garbage
collection (`registry.gc`), so a concurrent push that is about to reference it is never broken.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ocispec.digest import Digest
from storage_backends import ObjectInfo, ObjectNotFound, StorageBackend

from . import layout
from .errors import BlobUnknown
from .repositories import Repositories


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int
    key: str
    """The storage key of the content."""


class Blobs:
    def __init__(self, storage: StorageBackend, repositories: Repositories) -> None:
        self.storage = storage
        self.repositories = repositories

    async def is_linked(self, name: str, digest: Digest) -> bool:
        return await self.storage.exists(layout.layer_link(name, digest))

    async def stat(self, name: str, digest: Digest) -> BlobInfo:
        """Size of a blob the repository links; BlobUnknown otherwise."""
        key = layout.blob(digest)
        linked, info = await asyncio.gather(self.is_linked(name, digest), self._stat_or_none(key))
        if not linked or info is None:
            raise BlobUnknown(f"blob {digest} is not in repository {name!r}", detail={"digest": str(digest)})
        return BlobInfo(digest, info.size, key)

    async def _stat_or_none(self, key: str) -> ObjectInfo | None:
        try:
            return await self.storage.stat(key)
        except ObjectNotFound:
            return None

    async def is_stored(self, digest: Digest) -> bool:
        return await self.storage.exists(layout.blob(digest))

    async def link(self, name: str, digest: Digest) -> None:
        link = layout.layer_link(name, digest)
        if not await self.storage.exists(link):
            await self.storage.put_bytes(link, str(digest).encode())
        await self.repositories.mark_exists(name)

    async def unlink(self, name: str, digest: Digest) -> None:
        if not await self.storage.delete(layout.layer_link(name, digest)):
            raise BlobUnknown(f"blob {digest} is not in repository {name!r}", detail={"digest": str(digest)})

    async def mount(self, name: str, digest: Digest, source: str | None) -> BlobInfo | None:
        """Link a blob from `source` (or from anywhere in the registry when None) into `name`.

        Returns None when it cannot be mounted, and the caller starts an upload instead.
        """
        if source is not None and not await self.is_linked(source, digest):
            return None
        try:
            info = await self.storage.stat(layout.blob(digest))
        except ObjectNotFound:
            return None
        await self.link(name, digest)
        return BlobInfo(digest, info.size, layout.blob(digest))
