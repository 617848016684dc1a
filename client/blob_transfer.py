"""Moving one blob's bytes: a resumable, verified download into the store, and an upload.

Download: into the store's `Ingest` (`ingest/<hex>.partial`), asking `Range: bytes=<offset>-`
when part of it is already there, re-requesting from the new offset when a connection breaks
mid-body (bounded), and letting `Ingest.commit()` check the sha256 before the blob becomes
visible. Upload: one PUT for small blobs, PATCH chunks with `Content-Range` for large ones,
recovering from a broken chunk by asking the registry how much it has. Both read and write
files in worker threads so the event loop never blocks on disk.

Nothing here decides *what* to transfer (that is `pull` and `push`).
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from .errors import DigestMismatch, RegistryError, RegistryUnavailable, Subject
from .progress import NoProgress, Progress
from .registry_http import RegistryTransport
from .store.errors import DigestMismatch as StoreDigestMismatch

if TYPE_CHECKING:
    from .store.contract import BlobIngest, BlobIngestion

WRITE_BUFFER = 1024 * 1024
READ_SIZE = 256 * 1024
DEFAULT_CHUNK_THRESHOLD = 16 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_RANGE = re.compile(r"^(?:bytes=)?(\d+)-(\d+)$")
T = TypeVar("T")
_BROKEN = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError)


@asynccontextmanager
async def _ingest(store: BlobIngest, digest: str, size: int) -> AsyncIterator[BlobIngestion]:
    """`store.ingest(digest, size)` entered and left in a worker thread (it may wait on a file lock)."""
    manager = store.ingest(digest, size)
    ingest = await asyncio.to_thread(manager.__enter__)
    try:
        yield ingest
    except BaseException:
        if not await asyncio.to_thread(manager.__exit__, *sys.exc_info()):
            raise
    else:
        await asyncio.to_thread(manager.__exit__, None, None, None)


async def download_blob(
    transport: RegistryTransport,
    path: str,
    scopes: tuple[str, ...],
    digest: str,
    size: int,
    store: BlobIngest,
    subject: Subject,
    progress: Progress | None = None,
) -> None:
    """Download the blob `digest` of `size` bytes at `path` (its API path) into `store`,
    verified, resuming."""
    progress = progress or NoProgress()
    progress.start(digest, size)
    reported = 0
    attempts = transport.retry.attempts
    mismatches = 0
    for attempt in range(attempts):
        try:
            async with _ingest(store, digest, size) as ingest:
                offset = ingest.offset
                if offset > reported:
                    progress.advance(digest, offset - reported)
                    reported = offset
                if offset < size:
                    received = await _receive(transport, path, scopes, digest, size, ingest, subject, progress)
                    reported += received
                await asyncio.to_thread(ingest.commit)
                return
        except _BROKEN as error:
            if attempt + 1 >= attempts:
                raise RegistryUnavailable(
                    f"{subject.action} of {subject.name} failed: download of {digest} kept breaking: {error}"
                ) from error
            await asyncio.sleep(transport.retry.delay(attempt))
        except (StoreDigestMismatch, DigestMismatch):
            if mismatches:
                raise
            # A corrupt partial (the store deleted it when commit failed): start over once.
            mismatches += 1
            progress.start(digest, size)
            reported = 0
    raise RegistryUnavailable(f"{subject.action} of {subject.name} failed: download of {digest} did not complete")


async def _receive(
    transport: RegistryTransport,
    path: str,
    scopes: tuple[str, ...],
    digest: str,
    size: int,
    ingest: BlobIngestion,
    subject: Subject,
    progress: Progress,
) -> int:
    """Stream the rest of the blob into `ingest`; the number of new bytes written."""
    offset = ingest.offset
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    written = 0
    async with transport.stream("GET", path, subject, scopes=scopes, ok=(200, 206), headers=headers) as response:
        skip = 0
        if offset and response.status == 200:
            skip = offset  # the registry ignored Range: drop what we already have
        elif response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise RegistryError(
                    f"{subject.action} of {subject.name} failed: the registry answered Range bytes={offset}- "
                    f"with Content-Range {response.headers.get('Content-Range')!r}"
                )
        buffer = bytearray()
        remaining = size - offset
        try:
            async for chunk in response.content.iter_chunked(READ_SIZE):
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                if len(chunk) > remaining:
                    chunk = chunk[:remaining]  # more than the descriptor said: commit will judge
                buffer += chunk
                remaining -= len(chunk)
                progress.advance(digest, len(chunk))
                if len(buffer) >= WRITE_BUFFER:
                    await asyncio.to_thread(ingest.write, bytes(buffer))
                    written += len(buffer)
                    buffer.clear()
                if remaining <= 0:
                    break
        finally:
            if buffer:  # what arrived before a break is good data: keep it for the resume
                await asyncio.to_thread(ingest.write, bytes(buffer))
                written += len(buffer)
    return written


async def download_from_urls(urls: list[str], digest: str, size: int, store: BlobIngest, what: str, progress: Progress | None = None) -> None:
    """A non-distributable layer the registry does not hold, from the first of its `urls` that
    serves it (as containerd fetches them), streamed into the store and verified."""
    progress = progress or NoProgress()
    failures = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=30, sock_read=120), auto_decompress=False) as session:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                failures.append(f"{url}: not an http(s) URL")
                continue
            progress.start(digest, size)
            try:
                async with _ingest(store, digest, size) as ingest:
                    if ingest.offset < size:
                        async with session.get(url) as response:
                            if response.status != 200:
                                failures.append(f"{url}: HTTP {response.status}")
                                continue
                            async for chunk in response.content.iter_chunked(WRITE_BUFFER):
                                await asyncio.to_thread(ingest.write, chunk)
                                progress.advance(digest, len(chunk))
                    await asyncio.to_thread(ingest.commit)
                    return
            except (StoreDigestMismatch, DigestMismatch):
                failures.append(f"{url}: served content that is not {digest}")
            except _BROKEN as error:
                failures.append(f"{url}: {type(error).__name__}: {error}")
    raise RegistryUnavailable(f"{what}: the non-distributable layer {digest} is not in the registry and none of its urls served it "
                              f"({'; '.join(failures) or 'no urls'})")  # fmt: skip


# -- upload ------------------------------------------------------------------------------------


def _file_body(path: Path, start: int, length: int, on_read: Callable[[int], None]) -> Callable[[], Any]:
    """A body factory streaming `length` bytes of `path` from `start`, re-creatable per attempt."""

    def factory() -> AsyncIterator[bytes]:
        async def generate() -> AsyncIterator[bytes]:
            handle = await asyncio.to_thread(open, path, "rb")
            try:
                await asyncio.to_thread(handle.seek, start)
                left = length
                while left > 0:
                    data = await asyncio.to_thread(handle.read, min(READ_SIZE, left))
                    if not data:
                        raise RegistryError(f"{path} is shorter than expected")
                    left -= len(data)
                    on_read(len(data))
                    yield data
            finally:
                await asyncio.to_thread(handle.close)

        return generate()

    return factory


def upload_location(headers: Any, subject: Subject) -> str:
    """The upload session's Location, which every answer about it names."""
    return _location(headers, subject)


def _location(headers: Any, subject: Subject) -> str:
    location = headers.get("Location")
    if not location:
        raise RegistryError(f"{subject.action} of {subject.name} failed: the registry sent no upload Location")
    return location


def _with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + "digest=" + digest.replace(":", "%3A")


async def upload_blob(
    transport: RegistryTransport,
    location: str,
    scopes: tuple[str, ...],
    digest: str,
    size: int,
    path: Path,
    subject: Subject,
    *,
    progress: Progress | None = None,
    chunk_threshold: int = DEFAULT_CHUNK_THRESHOLD,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> None:
    """Upload the blob in `path` into the upload session at `location`: one PUT up to
    `chunk_threshold` bytes, PATCH chunks beyond."""
    progress = progress or NoProgress()
    progress.start(digest, size)
    sent = [0]

    def on_read(n: int) -> None:
        sent[0] += n
        progress.advance(digest, n)

    if size <= chunk_threshold:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}

        def whole() -> Any:
            if sent[0]:
                progress.start(digest, size)  # a re-sent body counts from zero again
                sent[0] = 0
            return _file_body(path, 0, size, on_read)()

        await transport.fetch("PUT", _with_digest(location, digest), subject, scopes=scopes, ok=(201,), headers=headers, data=whole)
        return

    offset = 0
    failures = 0
    while offset < size:
        length = min(chunk_size, size - offset)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Content-Range": f"{offset}-{offset + length - 1}",
        }
        try:
            reply = await transport.fetch(
                "PATCH",
                location,
                subject,
                scopes=scopes,
                ok=(202,),
                headers=headers,
                data=_file_body(path, offset, length, on_read),
                retry_connection_errors=False,
            )
        except RegistryUnavailable:
            failures += 1
            if failures >= transport.retry.attempts:
                raise
            offset = await _upload_offset(transport, location, subject, scopes)
            progress.start(digest, size)  # recount from what the registry holds
            progress.advance(digest, offset)
            sent[0] = offset
            continue
        location = _location(reply.headers, subject)
        offset += length
    await transport.fetch(
        "PUT", _with_digest(location, digest), subject, scopes=scopes, ok=(201,), headers={"Content-Length": "0"}, data=b""
    )


async def _upload_offset(transport: RegistryTransport, location: str, subject: Subject, scopes: tuple[str, ...]) -> int:
    """How many bytes the upload session holds, from its status (`Range: 0-<last>`)."""
    reply = await transport.fetch("GET", location, subject, scopes=scopes, ok=(204,))
    match = _RANGE.match(reply.headers.get("Range", ""))
    return int(match.group(2)) + 1 if match else 0


# -- concurrency ---------------------------------------------------------------------------------


async def gather_bounded(jobs: list[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run `jobs` at most `limit` at a time; the first failure cancels the rest and is raised."""
    semaphore = asyncio.Semaphore(max(1, limit))

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await job()

    tasks = [asyncio.ensure_future(run(job)) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
