"""Blobs of repositories: content stored once per digest, linked into each repository.

A blob is served from a repository only while that repository links it. Deleting a blob from
a repository removes the link, never the shared content: content is reclaimed only by garbage
collection (`registry.gc`), which first moves what nothing references into `trash/` and deletes
it only at a later run. Every access to content goes through `content_info`, which brings
trashed content back, so a push racing gc (a HEAD that made the client skip an upload, a
mount, a manifest PUT naming the blob) finds it, or learns cleanly that it is gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ocispec.digest import Digest
from storage_backends import ObjectInfo, ObjectNotFound, StorageBackend

from . import layout
from .errors import BlobUnknown, RangeInvalid
from .repositories import Repositories


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int
    key: str
    """The storage key of the content."""


@dataclass(frozen=True)
class ByteRange:
    """One range of a read, as a client asks for it: `first`-`last` inclusive, either open
    (`first`- to the end; -`last` for the final `last` bytes)."""

    first: int | None
    last: int | None

    def within(self, size: int) -> tuple[int, int]:
        """(offset, count) of this range in content of `size` bytes; RangeInvalid when it
        selects no byte of it."""
        unsatisfiable = RangeInvalid(f"range {self} is outside the blob of {size} bytes", blob_size=size)
        if self.first is None:
            if not self.last:
                raise unsatisfiable
            offset = max(size - self.last, 0)
            return offset, size - offset
        if self.first >= size or (self.last is not None and self.last < self.first):
            raise unsatisfiable
        end = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, end - self.first + 1

    def __str__(self) -> str:
        return f"bytes={'' if self.first is None else self.first}-{'' if self.last is None else self.last}"


@dataclass(frozen=True)
class Redirect:
    """The client fetches the content from `url` itself (a presigned object-store URL)."""

    url: str


@dataclass(frozen=True)
class LocalFile:
    """The content is a file on this machine: send it from the kernel (sendfile)."""

    path: str


@dataclass(frozen=True)
class Stream:
    """The content comes from the backend as chunks."""

    chunks: AsyncIterator[bytes]


@dataclass(frozen=True)
class BlobRead:
    """How to serve (part of) a blob: `count` bytes from `offset` of content of `info.size`."""

    info: BlobInfo
    offset: int
    count: int
    partial: bool
    source: Redirect | LocalFile | Stream


class Blobs:
    def __init__(self, storage: StorageBackend, repositories: Repositories) -> None:
        self.storage = storage
        self.repositories = repositories

    async def stat(self, name: str, digest: Digest) -> BlobInfo:
        """Size of a blob the repository links; BlobUnknown otherwise."""
        [size] = await self.sizes(name, [digest])
        if size is None:
            raise BlobUnknown(f"blob {digest} is not in repository {name!r}", detail={"digest": str(digest)})
        return BlobInfo(digest, size, layout.blob(digest))

    async def sizes(self, name: str, digests: Sequence[Digest]) -> list[int | None]:
        """The stored size of each blob the repository links, None where it links none: every
        link and blob looked up in one storage call (content gc moved to its trash is brought
        back, and only for a blob the repository links)."""
        found = await self.storage.stat_many([path for digest in digests for path in (layout.layer_link(name, digest), layout.blob(digest))])
        sizes: list[int | None] = []
        for index, digest in enumerate(digests):
            link, content = found[2 * index], found[2 * index + 1]
            if link is not None and content is None:
                content = await self.content_info(digest)
            sizes.append(content.size if link is not None and content is not None else None)
        return sizes

    async def read(self, name: str, digest: Digest, byte_range: ByteRange | None = None) -> BlobRead:
        """How to serve a blob the repository links: a redirect when the backend hands out
        URLs, a local file when it is on this machine's disk, else a stream."""
        info = await self.stat(name, digest)
        offset, count = byte_range.within(info.size) if byte_range is not None else (0, info.size)
        partial = byte_range is not None
        redirect = await self.storage.redirect_url(info.key)
        if redirect is not None:
            return BlobRead(info, offset, count, partial, Redirect(redirect))
        local = await self.storage.local_file(info.key)
        if local is not None:
            return BlobRead(info, offset, count, partial, LocalFile(local))
        return BlobRead(info, offset, count, partial, Stream(self.storage.read(info.key, offset, count)))

    async def read_small(self, name: str, digest: Digest, limit: int) -> bytes | None:
        """The content of a blob the repository links, when its stored size is at most `limit`
        (never read a large blob whole because a descriptor claims it is small); else None."""
        info = await self.stat(name, digest)
        if info.size > limit:
            return None
        try:
            return await self.storage.get_bytes(info.key)
        except ObjectNotFound:
            raise BlobUnknown(f"blob {digest} is not in repository {name!r}", detail={"digest": str(digest)}) from None

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
        await self.repositories.mark_exists(name, with_markers=[layout.layer_link(name, digest)])

    async def unlink(self, name: str, digest: Digest) -> None:
        if not await self.storage.delete(layout.layer_link(name, digest)):
            raise BlobUnknown(f"blob {digest} is not in repository {name!r}", detail={"digest": str(digest)})

    async def mount(self, name: str, digest: Digest, source: str | None) -> BlobInfo | None:
        """Link a blob from `source` (or from anywhere in the registry when None) into `name`.

        Returns None when it cannot be mounted, and the caller starts an upload instead.
        """
        found = await self.storage.stat_many([layout.blob(digest), *([layout.layer_link(source, digest)] if source is not None else [])])
        if source is not None and found[1] is None:
            return None  # refused before anything could be restored from gc's trash
        info = found[0] or await self.content_info(digest)
        if info is None:
            return None
        await self.link(name, digest)
        return BlobInfo(digest, info.size, layout.blob(digest))
