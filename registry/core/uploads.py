"""Blob upload sessions: monolithic, chunked, streamed, resumable, and verified while streaming.

A session lives entirely in storage (`uploads/<id>.json` plus an appendable data object), so
it survives restarts and any worker or replica can continue it. Each PATCH is appended all or
nothing. The digest is computed while bytes stream in. The running hash is kept in this
process, keyed by session and offset, and — where the backend appends exclusively across
processes (`StorageBackend.exclusive_appends`: the filesystem) — saved beside the data after
every append (`hashstate`, a `ResumableHash` state), so the PATCH or PUT that lands on another
worker process goes on from it. Where neither is there (S3, or a state of another offset),
completion re-reads the appended bytes once instead. Nothing becomes a blob until its digest
has been verified.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
import weakref
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

from ocispec.digest import SUPPORTED_ALGORITHMS, Digest
from ocispec.resumable_hash import ResumableHash, StateRefused, available
from storage_backends import AppendConflict, ObjectNotFound, StorageBackend

from . import layout
from .blobs import BlobInfo, Blobs
from .errors import BlobUploadUnknown, DigestInvalid, RangeInvalid, SizeInvalid
from .streams import LengthMismatch, exactly, hashing

UPLOAD_ID_LENGTH = 32
# Running hashes kept at most; older sessions fall back to re-reading their bytes.
MAX_RUNNING_HASHES = 10_000


@dataclass(frozen=True)
class UploadStatus:
    name: str
    upload_id: str
    size: int
    """Bytes received so far."""
    algorithm: str = "sha256"
    """What the content is hashed with as it arrives (the POST's `digest-algorithm`)."""


@dataclass
class _RunningHash:
    offset: int
    hasher: Any


class Uploads:
    def __init__(self, storage: StorageBackend, blobs: Blobs) -> None:
        self.storage = storage
        self.blobs = blobs
        self._hashes: dict[str, _RunningHash] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- sessions --------------------------------------------------------------------------
    async def start(self, name: str, algorithm: str = "sha256") -> UploadStatus:
        """A new session; `algorithm` (the spec's `digest-algorithm`) is the one the content is
        hashed with as it arrives, so the final digest check needs no second read."""
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise DigestInvalid(f"digest algorithm {algorithm!r} is not supported (use {' or '.join(SUPPORTED_ALGORITHMS)})",
                                detail={"digest-algorithm": algorithm})  # fmt: skip
        upload_id = uuid.uuid4().hex
        state = {"name": name, "id": upload_id, "started": time.time(), "algorithm": algorithm}
        await self.storage.put_bytes(layout.upload_state(upload_id), json.dumps(state).encode())
        self._remember(upload_id, _RunningHash(0, _new_hasher(algorithm)))
        return UploadStatus(name, upload_id, 0, algorithm)

    async def status(self, name: str, upload_id: str) -> UploadStatus:
        if len(upload_id) != UPLOAD_ID_LENGTH or not all(c in "0123456789abcdef" for c in upload_id):
            raise BlobUploadUnknown(f"upload {upload_id!r} is not a valid upload id")
        try:
            state = json.loads(await self.storage.get_bytes(layout.upload_state(upload_id)))
        except ObjectNotFound:
            state = {}
        if state.get("name") != name:
            raise BlobUploadUnknown(f"no upload {upload_id} in repository {name!r}")
        size = await self.storage.append_size(layout.upload_data(name, upload_id))
        return UploadStatus(name, upload_id, size, state.get("algorithm", "sha256"))

    async def cancel(self, name: str, upload_id: str) -> None:
        async with self._lock(upload_id):
            await self.status(name, upload_id)
            await self._discard(name, upload_id)

    # -- receiving bytes -----------------------------------------------------------------
    async def append(
        self,
        name: str,
        upload_id: str,
        body: AsyncIterable[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> UploadStatus:
        """Append one chunk. With `start` (from Content-Range) it must continue the upload."""
        async with self._lock(upload_id):
            status = await self.status(name, upload_id)
            _check_continues(status, start)
            size = await self._append(status, body, length)
            return UploadStatus(name, upload_id, size, status.algorithm)

    async def _append(self, status: UploadStatus, body: AsyncIterable[bytes], length: int | None, *, save_hash: bool = True) -> int:
        hasher = await self._hasher_at(status)
        stream = exactly(body, length)
        try:
            size = await self.storage.append(layout.upload_data(status.name, status.upload_id), stream, at=status.size,
                                             observe=hasher.update if hasher is not None else None)  # fmt: skip
        except LengthMismatch as error:
            raise SizeInvalid(
                f"chunk length does not match its Content-Range/Content-Length: {error}", upload=status
            ) from None
        except AppendConflict as conflict:
            now = status if conflict.size is None else UploadStatus(status.name, status.upload_id, conflict.size, status.algorithm)
            raise RangeInvalid(
                "another chunk of this upload was written meanwhile or is being written now; "
                "send chunks one at a time, each after the previous one was answered",
                upload=now,
            ) from None
        if hasher is None:
            self._hashes.pop(status.upload_id, None)
            return size
        self._remember(status.upload_id, _RunningHash(size, hasher))
        if save_hash and isinstance(hasher, ResumableHash) and self.storage.exclusive_appends:
            saved = f"{size}\n".encode() + hasher.state()
            await self.storage.put_bytes(layout.upload_hash_state(status.name, status.upload_id), saved)
        return size

    async def _hasher_at(self, status: UploadStatus) -> Any:
        """A hash of the upload's first `status.size` bytes to go on hashing with: this
        process's running one; else, where storage appends exclusively (so what was hashed is
        what was appended), a new one for an empty upload or the state the last append saved.
        None when there is none: completion re-reads the bytes."""
        running = self._hashes.get(status.upload_id)
        if running is not None and running.offset == status.size:
            return running.hasher.copy()
        if not self.storage.exclusive_appends:
            return None
        if status.size == 0:
            return _new_hasher(status.algorithm)
        return await self._saved_hasher(status)

    async def _saved_hasher(self, status: UploadStatus) -> ResumableHash | None:
        try:
            saved = await self.storage.get_bytes(layout.upload_hash_state(status.name, status.upload_id))
        except ObjectNotFound:
            return None
        offset, _, state = saved.partition(b"\n")
        if offset != str(status.size).encode():
            return None  # saved before a later append (whose process had no hash to go on with)
        try:
            return ResumableHash.resume(state)
        except StateRefused:
            return None

    async def finish(
        self,
        name: str,
        upload_id: str,
        digest: Digest,
        body: AsyncIterable[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> BlobInfo:
        """Append the last chunk (may be empty), verify the digest and publish the blob.

        A session that received nothing before this request (POST, then PUT with the whole
        body, as containerd pushes) takes the monolithic path: straight into the blob.
        """
        async with self._lock(upload_id):
            status = await self.status(name, upload_id)
            _check_continues(status, start)
            if status.size == 0:
                try:
                    blob = await self.upload_whole(name, digest, body, length)
                except DigestInvalid:
                    await self._discard(name, upload_id)
                    raise
                await self._discard(name, upload_id)
                return blob
            size = await self._append(status, body, length, save_hash=False)  # checked right here
            actual = await self._digest_of(UploadStatus(name, upload_id, size, status.algorithm), digest.algorithm)
            if actual != digest.encoded:
                await self._discard(name, upload_id)
                raise DigestInvalid(
                    f"uploaded content has digest {digest.algorithm}:{actual}, not {digest}",
                    detail={"expected": str(digest), "actual": f"{digest.algorithm}:{actual}"},
                )
            data_key = layout.upload_data(name, upload_id)
            if await self.blobs.is_stored(digest):
                await self.storage.abort_append(data_key)
            else:
                await self.storage.commit_append(data_key, layout.blob(digest))
            await self.blobs.link(name, digest)
            await self._discard(name, upload_id)
            return BlobInfo(digest, size, layout.blob(digest))

    async def upload_whole(self, name: str, digest: Digest, body: AsyncIterable[bytes], length: int | None) -> BlobInfo:
        """A monolithic upload: one request carries the whole blob; no session is recorded.

        The body streams straight into an atomic `put` of the blob while it is hashed; the
        stream itself raises at its end when the digest does not match, so the backend
        discards the write and nothing becomes visible.
        """
        hasher = digest.hasher()
        stream = _verified(hashing(exactly(body, length), hasher), hasher, digest)
        try:
            if await self.blobs.is_stored(digest):
                size = 0
                async for chunk in stream:  # already stored once: verify, keep nothing
                    size += len(chunk)
            else:
                size = await self.storage.put(layout.blob(digest), stream)
        except LengthMismatch as error:
            raise SizeInvalid(f"body length does not match Content-Length: {error}") from None
        await self.blobs.link(name, digest)
        return BlobInfo(digest, size, layout.blob(digest))

    async def purge_stale(self, older_than: float, *, now: float | None = None) -> list[UploadStatus]:
        """Delete upload sessions started more than `older_than` seconds ago, in every
        repository; returns what they were. Clients abandon uploads (a killed push); this is
        the operator's sweep for them (`dockyard-registry uploads purge`)."""
        cutoff = (now if now is not None else time.time()) - older_than
        purged: list[UploadStatus] = []
        last: str | None = None
        while keys := await self.storage.list(layout.UPLOADS, start_after=last, limit=500):
            last = keys[-1]
            for key in keys:
                upload_id = key.removesuffix(".json")
                try:
                    state = json.loads(await self.storage.get_bytes(layout.upload_state(upload_id)))
                except ObjectNotFound:
                    continue  # finished meanwhile
                if state.get("started", 0) < cutoff:
                    await self._discard(state["name"], upload_id)
                    purged.append(UploadStatus(state["name"], upload_id, 0))
        return purged

    # -- internals -------------------------------------------------------------------------
    async def _digest_of(self, status: UploadStatus, algorithm: str) -> str:
        running = self._hashes.get(status.upload_id)
        if running is not None and running.hasher.name == algorithm and running.offset == status.size:
            return str(running.hasher.hexdigest())
        hasher = hashlib.new(algorithm)
        try:
            async for chunk in self.storage.read_appended(layout.upload_data(status.name, status.upload_id)):
                await asyncio.to_thread(hasher.update, chunk)
        except ObjectNotFound:
            pass
        return hasher.hexdigest()

    async def _discard(self, name: str, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)
        await self.storage.abort_append(layout.upload_data(name, upload_id))
        await self.storage.delete_tree(layout.upload_dir(name, upload_id))
        await self.storage.delete(layout.upload_state(upload_id))

    def _lock(self, upload_id: str) -> asyncio.Lock:
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = self._locks[upload_id] = asyncio.Lock()
        return lock

    def _remember(self, upload_id: str, running: _RunningHash) -> None:
        self._hashes.pop(upload_id, None)
        if len(self._hashes) >= MAX_RUNNING_HASHES:
            self._hashes.pop(next(iter(self._hashes)))
        self._hashes[upload_id] = running


def _new_hasher(algorithm: str) -> Any:
    """A hash whose state can be saved for another process where this machine has one."""
    return ResumableHash(algorithm) if available(algorithm) else hashlib.new(algorithm)


async def _verified(chunks: AsyncIterable[bytes], hasher: Any, digest: Digest) -> AsyncIterable[bytes]:
    """Pass chunks through; raise DigestInvalid at the end when `hasher` disagrees with `digest`."""
    async for chunk in chunks:
        yield chunk
    if hasher.hexdigest() != digest.encoded:
        actual = f"{digest.algorithm}:{hasher.hexdigest()}"
        raise DigestInvalid(
            f"uploaded content has digest {actual}, not {digest}", detail={"expected": str(digest), "actual": actual}
        )


def _check_continues(status: UploadStatus, start: int | None) -> None:
    if start is not None and start != status.size:
        raise RangeInvalid(
            f"chunk starts at byte {start} but the upload has {status.size} bytes; "
            "chunks must be sent in order without gaps or overlaps",
            upload=status,
        )
