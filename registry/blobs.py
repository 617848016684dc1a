"""Blobs of repositories: content stored once per digest, linked into each repository.

A blob is served from a repository only while that repository links it. Deleting a blob from
a repository removes the link, never the shared content: content is reclaimed only by garbage
collection (`registry.gc`), which first moves what nothing references into `trash/` and deletes
it only at a later run. Every access to content goes through `content_info`, which brings
trashed content back, so a push racing gc (a HEAD that made the client skip an upload, a
mount, a manifest PUT naming the blob) finds it, or learns cleanly that it is gone.
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
        linked, info = await asyncio.gather(self.is_linked(name, digest), self.content_info(digest))
        if not linked or info is None:
            raise BlobUnknown(f"blob {digest} is not in repository {name!r}", detail={"digest": str(digest)})
        return BlobInfo(digest, info.size, key)

    async def content_info(self, digest: Digest) -> ObjectInfo | None:
        """The stored content of `digest` (brought back from gc's trash if it is there), or None."""
        try:
            return await self.storage.stat(layout.blob(digest))
        except ObjectNotFound:
            pass
        if not await self.restore(digest):
            return None
        try:
            return await self.storage.stat(layout.blob(digest))
        except ObjectNotFound:
            return None

    async def restore(self, digest: Digest) -> bool:
        """Move trashed content back to `blobs/`; False when it is not in the trash (any more)."""
        try:
            await self.storage.move(layout.trashed_blob(digest), layout.blob(digest))
        except ObjectNotFound:
            return False
        await self.storage.delete(layout.trashed_since(digest))
        return True

    async def is_stored(self, digest: Digest) -> bool:
        return await self.content_info(digest) is not None

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
        info = await self.content_info(digest)
        if info is None:
            return None
        await self.link(name, digest)
        return BlobInfo(digest, info.size, layout.blob(digest))
