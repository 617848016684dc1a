"""The async storage contract every Dockyard backend implements.

Object layout (all keys are `/`-separated relative paths; the registry alone decides them):

    blobs/<algorithm>/<2 hex>/<hex>                           content, stored once per digest
    repositories/<name>/_layers/<algorithm>/<hex>             link: blob belongs to the repo
    repositories/<name>/_manifests/revisions/<alg>/<hex>      link: manifest of the repo (JSON)
    repositories/<name>/_manifests/tags/<tag>                 the digest the tag points at
    repositories/<name>/_referrers/<alg>/<subject hex>/<alg>/<hex>   referrer descriptor (JSON)
    uploads/<uuid>.json                                       upload session (its repository, start)
    repositories/<name>/_uploads/<uuid>/data                  appendable object of that upload
    repositories/<name>/_uploads/<uuid>/hashstate             its running hash, for another process
    catalog/<name with / as +>                                marks a repository as existing
    trash/<algorithm>/<2 hex>/<hex>/data                      content gc took away, until it deletes it
    trash/<algorithm>/<2 hex>/<hex>/since                     when gc took it (seconds since the epoch)

(`registry.core.layout` builds every one of these keys; nothing else does. The Hub's records —
accounts, tokens, settings, stars, webhooks, search — are in the metadata database; stores
written before it have them as JSON under `hub/` and `repositories/<name>/_settings.json`,
`_webhooks.json`, which `dockyard-registry metadata import` reads.)

Guarantees of every backend:
- `put` and `commit_append` make an object visible atomically: a reader sees the old object,
  nothing, or the complete new one — never a prefix, even after kill -9 or power loss.
- `append` is all-or-nothing: when the chunk stream fails part-way, the object keeps its
  previous size. Objects being appended to are never visible under their final name.
- `list` returns the immediate children of a prefix (objects and "directories"), sorted by
  byte value, after `start_after` and at most `limit` of them; names starting with `.` are
  private to backends and never listed.
- Reads stream: nothing here ever holds a whole blob in memory (`get_bytes` is for the small
  metadata objects only).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass


class StorageError(Exception):
    """Base of the storage errors the registry understands."""


class ObjectNotFound(StorageError):
    def __init__(self, path: str) -> None:
        super().__init__(f"no object at {path!r}")
        self.path = path


class InvalidRange(StorageError):
    """A read outside the object."""


class StorageFull(StorageError):
    """No space left (or the quota is used up): the write did not happen, reads still work."""


class AppendConflict(StorageError):
    """An `append(at=…)` found the object at another size: someone else appended meanwhile
    (or is appending right now)."""

    def __init__(self, path: str, size: int | None) -> None:
        held = "another append to it is in progress" if size is None else f"it has {size} bytes"
        super().__init__(f"appendable object {path!r} changed under this append: {held}")
        self.path = path
        self.size = size


class InvalidPath(StorageError):
    """A key with empty, `.` or `..` components, or a leading `/`."""


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    modified: float  # seconds since the epoch


def check_path(path: str) -> str:
    """Refuse keys that could escape the backend's root; return the key unchanged."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise InvalidPath(f"invalid storage key {path!r}")
    for part in path.split("/"):
        if part in ("", ".", "..") or part.startswith("."):
            raise InvalidPath(f"invalid storage key {path!r}")
    return path


async def iterate_once(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


class StorageBackend(ABC):
    """One place registry bytes live. Implementations: filesystem, s3."""

    name: str = "abstract"
    exclusive_appends: bool = False
    """True when `append(at=…)` is checked and done under a lock that holds across processes,
    so the appended bytes are exactly the ones this call streamed, at `at`: what the caller
    hashed while streaming is then the object's content (the registry keeps upload hash
    states only then). False: the check is made, but two processes can race past it."""

    # -- whole objects -------------------------------------------------------------------
    @abstractmethod
    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the streamed bytes at `path`, replacing it atomically; return the size."""

    async def put_bytes(self, path: str, data: bytes) -> None:
        await self.put(path, iterate_once(data))

    async def put_marker(self, path: str) -> None:
        """An empty object whose existence is all it says (a repository's link to a blob, a
        catalog entry): durable once this returns, and idempotent. Backends may write it more
        cheaply than `put_bytes`, since there is no content that could be seen half-written."""
        await self.put_bytes(path, b"")

    async def stat_many(self, paths: Sequence[str]) -> list[ObjectInfo | None]:
        """`stat` of each path, None where there is no object; as one operation where the
        backend can (the filesystem: one thread hop), else concurrently."""

        async def one(path: str) -> ObjectInfo | None:
            try:
                return await self.stat(path)
            except ObjectNotFound:
                return None

        return list(await asyncio.gather(*(one(path) for path in paths)))

    async def ensure_markers(self, paths: Sequence[str]) -> list[bool]:
        """`put_marker` of each path whose marker is not there already; for each path, True
        when this call made it. Backends that can do it in one step do (the filesystem: one
        thread hop, every marker created before any directory is synced, so a journaling file
        system commits them together); callers racing on one path may each be told True."""

        async def one(path: str) -> bool:
            if await self.exists(path):
                return False
            await self.put_marker(path)
            return True

        return list(await asyncio.gather(*(one(path) for path in paths)))

    @abstractmethod
    async def get_bytes(self, path: str) -> bytes:
        """The whole content of a small object. Raises ObjectNotFound."""

    @abstractmethod
    def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream `length` bytes (to the end when None) from `offset`.

        Raises ObjectNotFound or InvalidRange on the first iteration.
        """

    @abstractmethod
    async def stat(self, path: str) -> ObjectInfo:
        """Size and modification time. Raises ObjectNotFound."""

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except ObjectNotFound:
            return False
        return True

    @abstractmethod
    async def list(self, prefix: str, *, start_after: str | None = None, limit: int | None = None) -> list[str]:
        """Names of the immediate children of directory `prefix` (empty when it has none)."""

    @abstractmethod
    async def delete(self, path: str) -> bool:
        """Remove one object; return False when there was none."""

    @abstractmethod
    async def delete_tree(self, prefix: str) -> None:
        """Remove every object below `prefix`."""

    @abstractmethod
    async def move(self, source: str, destination: str) -> None:
        """Rename an object; the destination is replaced atomically. Raises ObjectNotFound."""

    # -- appendable objects (chunked uploads) -------------------------------------------------
    @abstractmethod
    async def append(self, path: str, chunks: AsyncIterable[bytes], *, at: int | None = None,
                     observe: Callable[[bytes], None] | None = None) -> int:  # fmt: skip
        """Append the streamed bytes to the appendable object at `path` (created when missing).

        All or nothing: when the stream raises, the object keeps its previous size and the
        exception propagates. Returns the new total size. With `at`, raises AppendConflict
        (and appends nothing) unless the object has exactly `at` bytes when the append begins.
        `observe` (a running digest's update) sees every chunk, in order, off the event loop:
        where the backend writes from a thread, in the same call, so it costs no extra hop.
        """

    @abstractmethod
    async def append_size(self, path: str) -> int:
        """Bytes appended so far; 0 for an object not yet created."""

    @abstractmethod
    def read_appended(self, path: str) -> AsyncIterator[bytes]:
        """Stream everything appended so far (to re-hash an upload another process began)."""

    @abstractmethod
    async def commit_append(self, path: str, destination: str) -> None:
        """Make the appended bytes the object `destination`, atomically, and drop `path`."""

    @abstractmethod
    async def abort_append(self, path: str) -> None:
        """Discard an appendable object and everything appended to it."""

    @abstractmethod
    async def reclaim_leftovers(self, older_than: float, *, dry_run: bool = False, now: float | None = None) -> tuple[int, int]:
        """Remove what interrupted writes left behind (temporary files of a process killed
        mid-write; unfinished multipart uploads) untouched for `older_than` seconds, and
        return (how many, bytes). Never touches a write still in progress: those are
        touched continually, or are younger than any sane grace period."""

    # -- serving ---------------------------------------------------------------------------
    async def local_file(self, path: str) -> str | None:
        """A filesystem path the server may sendfile() from, when the backend has one."""
        return None

    async def redirect_url(self, path: str, *, method: str = "GET") -> str | None:
        """A URL clients may fetch the object from directly (e.g. presigned S3), or None."""
        return None

    async def close(self) -> None:
        """Release connections and threads."""


OBSERVE_IN_THREAD = 64 * 1024
"""Batches at least this big are observed in a worker thread (hashlib releases the GIL on large
inputs), smaller ones on the event loop, where the hop would cost more than the work."""

BATCH_SIZE = 1024 * 1024
"""Bytes gathered from a stream of network reads before one hop to a worker thread."""
MAX_BATCH_PIECES = 512
"""At most this many pieces per batch (writev takes at most IOV_MAX, 1024 on Linux)."""


async def batched(chunks: AsyncIterable[bytes], size: int = BATCH_SIZE) -> AsyncIterator[list[bytes]]:
    """Group a stream of (small) chunks into lists of about `size` bytes, without copying:
    one thread hop per list instead of one per network read, and none of the memory or CPU a
    join into one contiguous buffer would cost (the pieces are written with writev)."""
    batch: list[bytes] = []
    batch_size = 0
    async for chunk in chunks:
        if not chunk:
            continue
        batch.append(chunk)
        batch_size += len(chunk)
        if batch_size >= size or len(batch) >= MAX_BATCH_PIECES:
            yield batch
            batch, batch_size = [], 0
    if batch:
        yield batch


def observe_all(observe: Callable[[bytes], None], pieces: Sequence[bytes]) -> None:
    for piece in pieces:
        observe(piece)


async def observed(chunks: AsyncIterable[bytes], observe: Callable[[bytes], None]) -> AsyncIterator[bytes]:
    """Pass chunks through, calling `observe` on each before it is passed on: in batches of
    about `BATCH_SIZE`, each batch in one worker-thread hop when large."""
    async for batch in batched(chunks):
        if sum(map(len, batch)) >= OBSERVE_IN_THREAD:
            await asyncio.to_thread(observe_all, observe, batch)
        else:
            observe_all(observe, batch)
        for chunk in batch:
            yield chunk
