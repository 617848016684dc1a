"""Amazon S3 (and S3-compatible) backend.

Every boto3 call is blocking, so each one runs on a dedicated `ThreadPoolExecutor` owned by the
backend (`max_workers` threads, as many pooled HTTP connections); the event loop only awaits
futures. The boto3 client is created lazily on a worker thread from one process-wide session
(guarded by a lock), so credentials come from the standard AWS chain (environment, shared
config, container/instance roles) and are resolved off the loop too.

Keys
----
A storage path `p` is the S3 key `<prefix>/p` (no prefix: `p`). Paths are checked with
`check_path` on every call, so a caller can never name a hidden (`.`-prefixed) key.

Whole objects
-------------
`put` buffers at most one part (`part_size`, >= 5 MiB) of the stream: a stream that ends before
filling a part becomes one PutObject, a longer one a multipart upload of `part_size` parts
created directly on the final key. S3 makes the object visible only when PutObject or
CompleteMultipartUpload succeeds, and then whole, so readers see the old object or the new one.
A failing stream aborts the multipart upload (old object untouched). `move` is a server-side copy
(CopyObject; parallel UploadPartCopy ranges above `COPY_PART_SIZE`) followed by a delete of the
source: the destination appears atomically, but both briefly coexist (S3 has no rename).
`delete` is HeadObject then DeleteObject, since S3's delete does not say whether a key existed.

Appendable objects (chunked blob uploads)
-----------------------------------------
S3 cannot read back the parts of an unfinished multipart upload, yet `read_appended` must stream
what was appended (a replica that continues another replica's upload re-hashes it). So appended
bytes live in ordinary, readable, hidden objects, and become one S3 multipart upload only at
commit time, by server-side copies. For the appendable path `dir/name`:

    dir/.name.append/state.json      the append state; the single source of truth:
        {"format": 1, "size": <total bytes>,
         "segments": [{"name": "seg-<hex>",  "size": <n >= 5 MiB>, "etag": "..."}, ...],
         "tail":     [{"name": "tail-<hex>", "size": <n>, "etag": "..."}, ...]}
    dir/.name.append/seg-<hex>       a segment: >= 5 MiB, written by one `append` call
    dir/.name.append/tail-<hex>      a tail piece: the small trailing bytes (< 5 MiB in all)
    dir/.name.append/compose-<hex>   scratch objects of a commit with more than 10 000 parts

The `.name.append` component starts with `.`, so none of this is ever listed, and `delete_tree`
of an upload's directory removes it with the rest. `append` reads the state, then:
- if the tail plus the new stream stays under S3's 5 MiB minimum part size, the new bytes become
  one more tail piece (past `MAX_TAIL_PIECES` pieces the tail is rewritten as one piece), so many
  small PATCHes cost one small PutObject each;
- otherwise the tail pieces (< 5 MiB, read into memory) followed by the rest of the stream are
  written, streamed part by part, to a new segment object.
Only after that object exists is the new `state.json` written (one PutObject, atomic). So
`append` is all or nothing: if the stream fails, the new object is never written (its multipart
upload is aborted) or, after a crash, is an orphan that no state names; the previous state still
describes exactly the previous bytes. Replaced tail pieces are deleted afterwards, best effort.
Any replica can continue: everything is in the bucket, nothing in process memory.

`commit_append(path, destination)` creates a multipart upload directly on `destination`, copies
each segment into it server-side (UploadPartCopy, in parallel, ranges of `COPY_PART_SIZE` to
5 GiB, conditional on the ETag recorded in the state), uploads the tail bytes (< 5 MiB) as the
last part and completes it. Every part but the last is >= 5 MiB by construction.
CompleteMultipartUpload is atomic: the destination appears whole, with all appended bytes, or
not at all (an old destination stays until then). A commit interrupted before completion leaves
an invisible unfinished multipart upload (configure the bucket's AbortIncompleteMultipartUpload
lifecycle rule) and the intact append state, so it can simply be retried. Completing directly on
the destination means no temporary object and no extra copy: each byte is stored twice in all
(segment, then destination), which any S3 design pays, because the destination (the digest) is
known only at the end and a multipart upload's key is fixed when it is created. Uploads with only
tail bytes are committed with one PutObject, a single segment of <= `COPY_PART_SIZE` with one
CopyObject, and more than 10 000 parts are composed in levels through scratch objects. The
hidden directory is deleted afterwards. `abort_append` deletes the hidden directory.

Limits: one `put` or one `append` call streams at most 10 000 parts of `part_size` (78 GiB at the
default 8 MiB). Two replicas appending to the same upload *at the same time* (a client error)
could lose one append; the digest check of the upload layer then rejects the blob.

Listing
-------
`list` is ListObjectsV2 with Delimiter='/', StartAfter and MaxKeys sized to the request, so it
costs O(result). S3 orders a "directory" `d` by its key `d/`, while the contract orders names:
`d` sorts before `d-x` and `d.x`, S3 puts `d/` after them. Contents and CommonPrefixes are
merged by name, and a name is returned only once the listing has gone past every directory
that could still sort before it (see `_settled`), fetching further pages when needed.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import math
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .base import AppendConflict, InvalidRange, ObjectInfo, ObjectNotFound, StorageBackend, StorageError, check_path, observed

T = TypeVar("T")

MiB = 1024 * 1024
GiB = 1024 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part of a multipart upload but the last
MAX_PART_SIZE = 5 * GiB  # S3's maximum for one part, and for a single CopyObject
MAX_PARTS = 10_000
COPY_PART_SIZE = 512 * MiB  # server-side copies above this go as parallel UploadPartCopy ranges
DEFAULT_PART_SIZE = 8 * MiB
READ_CHUNK = 1 * MiB
MAX_TAIL_PIECES = 32
LIST_PAGE = 1000
DELETE_BATCH = 1000
PRESIGN_EXPIRES = 20 * 60

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}

_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


def _new_client(region: str | None, endpoint_url: str | None, connections: int) -> Any:
    """An S3 client from one process-wide session (session creation is slow and not thread-safe)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(
                signature_version="s3v4",
                max_pool_connections=connections,
                retries={"mode": "standard", "max_attempts": 5},
            ),
        )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@dataclass
class _AppendState:
    size: int = 0
    segments: list[dict[str, Any]] = field(default_factory=list)
    tail: list[dict[str, Any]] = field(default_factory=list)

    def encode(self) -> bytes:
        return json.dumps(
            {"format": 1, "size": self.size, "segments": self.segments, "tail": self.tail}
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> _AppendState:
        raw = json.loads(data)
        if raw.get("format") != 1:
            raise StorageError(f"unknown append state format {raw.get('format')!r}")
        return cls(int(raw["size"]), list(raw["segments"]), list(raw["tail"]))

    @property
    def tail_size(self) -> int:
        return sum(piece["size"] for piece in self.tail)


@dataclass(frozen=True)
class _Source:
    """A byte range of an existing object, copied server-side into one part."""

    key: str
    start: int
    end: int  # inclusive
    etag: str | None = None

    @property
    def size(self) -> int:
        return self.end - self.start + 1


class S3Backend(StorageBackend):
    name = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        region: str | None = None,
        endpoint_url: str | None = None,
        redirect: bool = True,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        max_workers: int = 16,
        presign_expires: int = PRESIGN_EXPIRES,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket is required")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes")
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = f"{check_path(prefix)}/" if prefix else ""
        self.region = region
        self.endpoint_url = endpoint_url
        self.redirect = redirect
        self.part_size = part_size
        self.presign_expires = presign_expires
        self._max_workers = max_workers
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="dockyard-s3")
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._closed = False
        # Tunables, overridden by tests to exercise paging and multi-level composition.
        self._page_size = LIST_PAGE
        self._max_parts = MAX_PARTS
        self._copy_part_size = COPY_PART_SIZE

    # -- plumbing ----------------------------------------------------------------------------
    def _s3(self) -> Any:
        """The boto3 client; created on first use, on a worker thread."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = _new_client(self.region, self.endpoint_url, self._max_workers)
        return self._client

    async def _run(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise StorageError("the S3 backend is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    def _call_sync(self, operation: str, path: str, params: dict[str, Any]) -> Any:
        try:
            return getattr(self._s3(), operation)(Bucket=self.bucket, **params)
        except ClientError as error:
            code = _code(error)
            if code in _NOT_FOUND:
                raise ObjectNotFound(path) from None
            if code == "InvalidRange":
                raise InvalidRange(f"range outside object {path!r}") from None
            raise StorageError(f"S3 {operation} of {path!r} failed: {code}: {error}") from error
        except BotoCoreError as error:
            raise StorageError(f"S3 {operation} of {path!r} failed: {error}") from error

    async def _call(self, operation: str, path: str, **params: Any) -> Any:
        """One S3 API call off the loop; errors become ObjectNotFound/InvalidRange/StorageError."""
        return await self._run(self._call_sync, operation, path, params)

    async def _call_shielded(self, operation: str, path: str, **params: Any) -> None:
        """A best-effort cleanup call that completes even when the caller is being cancelled."""
        future = asyncio.ensure_future(self._call(operation, path, **params))
        future.add_done_callback(_consume)
        try:
            await asyncio.shield(future)
        except StorageError:
            pass

    def _key(self, path: str) -> str:
        return self.prefix + check_path(path)

    async def reclaim_leftovers(self, older_than: float, *, dry_run: bool = False, now: float | None = None) -> tuple[int, int]:
        """Unfinished multipart uploads under the prefix (a process killed between create and
        complete); their parts' bytes are counted, then the upload is aborted."""
        cutoff = (time.time() if now is None else now) - older_than
        count = size = 0
        params: dict[str, Any] = {"Prefix": self.prefix} if self.prefix else {}
        while True:
            page = await self._call("list_multipart_uploads", self.prefix or "/", **params)
            for upload in page.get("Uploads") or []:
                if upload["Initiated"].timestamp() > cutoff:
                    continue
                parts = await self._call("list_parts", upload["Key"], Key=upload["Key"], UploadId=upload["UploadId"])
                size += sum(part.get("Size", 0) for part in parts.get("Parts") or [])
                count += 1
                if not dry_run:
                    await self._call_shielded("abort_multipart_upload", upload["Key"], Key=upload["Key"], UploadId=upload["UploadId"])
            if not page.get("IsTruncated"):
                return count, size
            params.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page["NextUploadIdMarker"])

    def _append_dir(self, path: str) -> str:
        """Key prefix (ending in `/`) of the hidden objects of the appendable object `path`."""
        parent, _, name = check_path(path).rpartition("/")
        return self.prefix + (f"{parent}/" if parent else "") + f".{name}.append/"

    # -- whole objects -------------------------------------------------------------------
    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        size, _ = await self._write(self._key(path), path, chunks)
        return size

    async def _write(self, key: str, path: str, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        """Stream `chunks` to `key`, holding at most about one part; return (size, ETag)."""
        part_size = self.part_size
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        size = 0
        try:
            async for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                # Upload only full parts while more may follow, so a stream of exactly one part
                # (or less) stays a single PutObject.
                while len(buffer) > part_size:
                    if upload_id is None:
                        created = await self._call("create_multipart_upload", path, Key=key)
                        upload_id = created["UploadId"]
                    part = bytes(memoryview(buffer)[:part_size])  # one copy, then the buffer shrinks
                    del buffer[:part_size]
                    parts.append(await self._upload_part(key, path, upload_id, len(parts) + 1, part))
                    del part
            if upload_id is None:
                response = await self._call("put_object", path, Key=key, Body=bytes(buffer))
                return size, response["ETag"]
            if buffer:
                parts.append(await self._upload_part(key, path, upload_id, len(parts) + 1, bytes(buffer)))
                buffer.clear()
            response = await self._call(
                "complete_multipart_upload", path, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            return size, response["ETag"]
        except BaseException:
            if upload_id is not None:
                await self._call_shielded("abort_multipart_upload", path, Key=key, UploadId=upload_id)
            raise

    async def _upload_part(self, key: str, path: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        if number > self._max_parts:
            raise StorageError(f"{path!r}: more than {self._max_parts} parts of {self.part_size} bytes")
        response = await self._call("upload_part", path, Key=key, UploadId=upload_id, PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": response["ETag"]}

    async def get_bytes(self, path: str) -> bytes:
        return await self._get_bytes(self._key(path), path)

    async def _get_bytes(self, key: str, path: str) -> bytes:
        def get() -> bytes:
            response = self._call_sync("get_object", path, {"Key": key})
            with response["Body"] as body:
                data: bytes = body.read()
                return data

        return await self._run(get)

    async def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        async with aclosing(self._read_key(self._key(path), path, offset, length)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _read_key(self, key: str, path: str, offset: int = 0, length: int | None = None) -> AsyncGenerator[bytes, None]:
        if offset < 0 or (length is not None and length < 0):
            raise InvalidRange(f"range {offset}+{length} of {path!r}")
        if length == 0:
            info = await self._stat_key(key, path)
            if offset > info.size:
                raise InvalidRange(f"range {offset}+0 outside object of {info.size} bytes")
            return
        params: dict[str, Any] = {"Key": key}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            params["Range"] = f"bytes={offset}-{end}"
        try:
            response = await self._call("get_object", path, **params)
        except InvalidRange:
            # S3 refuses a range starting at (or past) the end; reading from the end is valid.
            info = await self._stat_key(key, path)
            if length is None and offset == info.size:
                return
            raise InvalidRange(f"range {offset}+{length} outside object of {info.size} bytes") from None
        body = response["Body"]
        try:
            skip = 0
            content_range = response.get("ContentRange")
            if content_range:
                total = int(content_range.rpartition("/")[2])
            else:
                # Whole object (no Range asked for, or the server ignored it).
                total = int(response["ContentLength"])
                skip = offset
            if offset > total or (length is not None and offset + length > total):
                raise InvalidRange(f"range {offset}+{length} outside object of {total} bytes")
            remaining = total - offset if length is None else length
            while skip > 0:
                skipped = await self._run(body.read, min(READ_CHUNK, skip))
                if not skipped:
                    raise StorageError(f"S3 object {path!r} ended early")
                skip -= len(skipped)
            while remaining > 0:
                chunk = await self._run(body.read, min(READ_CHUNK, remaining))
                if not chunk:
                    raise StorageError(f"S3 object {path!r} ended early")
                remaining -= len(chunk)
                yield chunk
        finally:
            body.close()

    async def stat(self, path: str) -> ObjectInfo:
        return await self._stat_key(self._key(path), path)

    async def _stat_key(self, key: str, path: str) -> ObjectInfo:
        response = await self._call("head_object", path, Key=key)
        return ObjectInfo(size=int(response["ContentLength"]), modified=response["LastModified"].timestamp())

    async def list(self, prefix: str, *, start_after: str | None = None, limit: int | None = None) -> list[str]:
        base = self._key(prefix) + "/"
        if limit is not None and limit <= 0:
            return []
        names: list[str] = []
        pending: list[str] = []
        cursor = ""  # the greatest key (relative to base) the listing has gone past
        token: str | None = None
        exhausted = False
        while True:
            pending.sort()
            taken = 0
            for name in pending:
                if (limit is not None and len(names) >= limit) or not (exhausted or _settled(name, cursor)):
                    break
                taken += 1
                if not names or names[-1] != name:  # an object and a "directory" of one name
                    names.append(name)
            del pending[:taken]
            if exhausted or (limit is not None and len(names) >= limit):
                return names
            wanted = self._page_size if limit is None else min(self._page_size, limit - len(names) + len(pending) + 2)
            params: dict[str, Any] = {"Prefix": base, "Delimiter": "/", "MaxKeys": max(wanted, 1)}
            if token is not None:
                params["ContinuationToken"] = token
            elif start_after is not None:
                params["StartAfter"] = base + start_after
            page = await self._call("list_objects_v2", prefix, **params)
            found: list[tuple[str, str]] = [(item["Key"][len(base):],) * 2 for item in page.get("Contents", ())]
            for item in page.get("CommonPrefixes", ()):
                relative = item["Prefix"][len(base):]
                found.append((relative, relative[:-1]))
            for relative, name in found:
                cursor = max(cursor, relative)
                if name and not name.startswith(".") and "/" not in name and (start_after is None or name > start_after):
                    pending.append(name)
            if page.get("IsTruncated"):
                token = page["NextContinuationToken"]
            else:
                exhausted = True

    async def delete(self, path: str) -> bool:
        key = self._key(path)
        try:
            await self._call("head_object", path, Key=key)
        except ObjectNotFound:
            return False
        await self._call("delete_object", path, Key=key)
        return True

    async def delete_tree(self, prefix: str) -> None:
        await self._delete_prefix(self._key(prefix) + "/", prefix)

    async def _delete_prefix(self, key_prefix: str, path: str) -> None:
        """Delete every key starting with `key_prefix`, a thousand per request."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Prefix": key_prefix, "MaxKeys": DELETE_BATCH}
            if token is not None:
                params["ContinuationToken"] = token
            page = await self._call("list_objects_v2", path, **params)
            keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
            if keys:
                result = await self._call("delete_objects", path, Delete={"Objects": keys, "Quiet": True})
                if result.get("Errors"):
                    first = result["Errors"][0]
                    raise StorageError(f"S3 could not delete {first.get('Key')!r}: {first.get('Code')}")
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    async def move(self, source: str, destination: str) -> None:
        source_key, destination_key = self._key(source), self._key(destination)
        head = await self._call("head_object", source, Key=source_key)
        size = int(head["ContentLength"])
        await self._compose(destination_key, destination, [(source_key, size, head.get("ETag"))], b"", scratch=None)
        await self._call("delete_object", source, Key=source_key)

    # -- appendable objects ------------------------------------------------------------------
    async def _load_state(self, base: str, path: str) -> _AppendState:
        try:
            data = await self._get_bytes(base + "state.json", path)
        except ObjectNotFound:
            return _AppendState()
        return _AppendState.decode(data)

    async def _read_tail(self, base: str, path: str, state: _AppendState) -> bytes:
        """The tail pieces, concatenated (< 5 MiB by construction)."""
        pieces = await asyncio.gather(*(self._get_bytes(base + piece["name"], path) for piece in state.tail))
        return b"".join(pieces)

    async def append(self, path: str, chunks: AsyncIterable[bytes], *, at: int | None = None,
                     observe: Callable[[bytes], None] | None = None) -> int:  # fmt: skip
        base = self._append_dir(path)
        state = await self._load_state(base, path)
        if at is not None and state.size != at:
            raise AppendConflict(path, state.size)
        stream = aiter(observed(chunks, observe) if observe is not None else chunks)
        head = bytearray()
        needed = MIN_PART_SIZE - state.tail_size
        ended = False
        while len(head) < needed:
            try:
                head += await anext(stream)
            except StopAsyncIteration:
                ended = True
                break
        replaced = state.tail
        if ended:
            if not head:
                return state.size
            name = f"tail-{uuid.uuid4().hex}"
            if len(state.tail) < MAX_TAIL_PIECES:
                data, tail, replaced = bytes(head), list(state.tail), []
            else:
                data, tail = await self._read_tail(base, path, state) + head, []
            response = await self._call("put_object", path, Key=base + name, Body=data)
            tail.append({"name": name, "size": len(data), "etag": response["ETag"]})
            new = _AppendState(state.size + len(head), state.segments, tail)
        else:
            first = await self._read_tail(base, path, state) + head
            del head[:]

            async def joined() -> AsyncIterator[bytes]:
                yield first
                async for chunk in stream:
                    yield chunk

            name = f"seg-{uuid.uuid4().hex}"
            written, etag = await self._write(base + name, path, joined())
            segment = {"name": name, "size": written, "etag": etag}
            new = _AppendState(state.size + written - state.tail_size, [*state.segments, segment], [])
        # The commit point: until this PutObject succeeds the old state describes the object.
        await self._call("put_object", path, Key=base + "state.json", Body=new.encode())
        if replaced:  # no longer named by the state; a failure here only leaves hidden garbage
            objects = [{"Key": base + piece["name"]} for piece in replaced]
            await self._call_shielded("delete_objects", path, Delete={"Objects": objects, "Quiet": True})
        return new.size

    async def append_size(self, path: str) -> int:
        return (await self._load_state(self._append_dir(path), path)).size

    async def read_appended(self, path: str) -> AsyncIterator[bytes]:
        base = self._append_dir(path)
        state = await self._load_state(base, path)
        for item in [*state.segments, *state.tail]:
            async with aclosing(self._read_key(base + item["name"], path)) as chunks:
                async for chunk in chunks:
                    yield chunk

    async def commit_append(self, path: str, destination: str) -> None:
        base = self._append_dir(path)
        destination_key = self._key(destination)
        state = await self._load_state(base, path)
        tail = await self._read_tail(base, path, state)
        if state.segments:
            sources = [(base + segment["name"], segment["size"], segment["etag"]) for segment in state.segments]
            await self._compose(destination_key, destination, sources, tail, scratch=base)
        else:
            await self._call("put_object", destination, Key=destination_key, Body=tail)
        await self._delete_prefix(base, path)

    async def abort_append(self, path: str) -> None:
        await self._delete_prefix(self._append_dir(path), path)

    # -- server-side composition -------------------------------------------------------------
    async def _compose(
        self,
        key: str,
        path: str,
        objects: builtins.list[tuple[str, int, str | None]],
        last: bytes,
        *,
        scratch: str | None,
    ) -> None:
        """Make `key` the concatenation of `objects` (each >= 5 MiB but the last) and `last`.

        One atomic CopyObject or CompleteMultipartUpload creates `key`. Objects above
        `COPY_PART_SIZE` are copied as several ranges in parallel (each at least
        `COPY_PART_SIZE`, at most 5 GiB); more than `_max_parts` parts go through scratch
        objects first.
        """
        sources: list[_Source] = []
        for object_key, size, etag in objects:
            if size == 0:  # only ever alone: `move` of an empty object
                sources.append(_Source(object_key, 0, -1, etag))
                continue
            # `count` ranges of `size // count` or one byte more: each >= piece (>= 5 MiB unless the
            # object is smaller than that) and < 2 * piece <= 5 GiB; count <= 1000, or <= 2048
            # for S3's largest object (5 TiB), well under 10 000 parts.
            piece = min(MAX_PART_SIZE // 2, max(self._copy_part_size, math.ceil(size / 1000)))
            count = max(1, size // piece)
            length, longer = divmod(size, count)
            start = 0
            for index in range(count):
                end = start + length + (1 if index < longer else 0)
                sources.append(_Source(object_key, start, end - 1, etag))
                start = end
        if len(sources) == 1 and not last and sources[0].start == 0:
            source = sources[0]
            copy_source = {"Bucket": self.bucket, "Key": source.key}
            extra = {"CopySourceIfMatch": source.etag} if source.etag else {}
            await self._call("copy_object", path, Key=key, CopySource=copy_source, **extra)
            return
        if len(sources) + (1 if last else 0) > self._max_parts:
            if scratch is None:
                raise StorageError(f"{path!r}: too many parts to compose")
            groups = [sources[i : i + self._max_parts] for i in range(0, len(sources), self._max_parts)]
            intermediate: list[tuple[str, int, str | None]] = []
            for group in groups:
                scratch_key = f"{scratch}compose-{uuid.uuid4().hex}"
                await self._compose_parts(scratch_key, path, group, b"")
                intermediate.append((scratch_key, sum(source.size for source in group), None))
            await self._compose(key, path, intermediate, last, scratch=scratch)
            return
        await self._compose_parts(key, path, sources, last)

    async def _compose_parts(self, key: str, path: str, sources: builtins.list[_Source], last: bytes) -> None:
        created = await self._call("create_multipart_upload", path, Key=key)
        upload_id = created["UploadId"]
        try:

            async def copy(number: int, source: _Source) -> dict[str, Any]:
                params: dict[str, Any] = {
                    "Key": key,
                    "UploadId": upload_id,
                    "PartNumber": number,
                    "CopySource": {"Bucket": self.bucket, "Key": source.key},
                    "CopySourceRange": f"bytes={source.start}-{source.end}",
                }
                if source.etag:
                    params["CopySourceIfMatch"] = source.etag
                response = await self._call("upload_part_copy", path, **params)
                return {"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]}

            results = await asyncio.gather(
                *(copy(number, source) for number, source in enumerate(sources, 1)), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            parts: list[dict[str, Any]] = list(results)  # type: ignore[arg-type]
            if last:
                parts.append(await self._upload_part(key, path, upload_id, len(parts) + 1, last))
            await self._call(
                "complete_multipart_upload", path, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            await self._call_shielded("abort_multipart_upload", path, Key=key, UploadId=upload_id)
            raise

    # -- serving ---------------------------------------------------------------------------
    async def local_file(self, path: str) -> str | None:
        check_path(path)
        return None

    async def redirect_url(self, path: str, *, method: str = "GET") -> str | None:
        key = self._key(path)
        if not self.redirect:
            return None
        operation = {"GET": "get_object", "HEAD": "head_object"}.get(method.upper())
        if operation is None:
            raise ValueError(f"no presigned URL for method {method!r}")

        def presign() -> str:
            url: str = self._s3().generate_presigned_url(
                operation, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.presign_expires
            )
            return url

        return await self._run(presign)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def shutdown() -> None:
            self._executor.shutdown(wait=True)
            if self._client is not None:
                self._client.close()

        await asyncio.get_running_loop().run_in_executor(None, shutdown)


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve a background future's exception so asyncio does not report it as lost."""
    if not future.cancelled():
        future.exception()


def _settled(name: str, cursor: str) -> bool:
    """Whether no directory still unlisted can sort before `name`.

    S3 returns the directory `d` (as `d/`) after the keys `d<c>...` with `c` < `/`, while by name
    `d` comes first. Such a directory is a proper prefix `d` of `name` followed by a byte below
    `/`; the shortest one has the greatest key, so once the listing passed `d/`, all are listed.
    """
    for index in range(1, len(name)):
        if name[index] < "/":
            return name[:index] + "/" <= cursor
    return True
