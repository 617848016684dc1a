"""The storage contract (`storage_backends.base`), checked against every backend.

Each test runs on the filesystem backend and on the S3 backend; the S3 one talks to a moto
server (one per session, started by `tests.s3server`) with a fresh bucket per test, a key
prefix, and the smallest part size S3 allows, so multipart paths run on small data.
The `test_s3_*` tests at the end check what only S3 has: the hidden state layout, no leftover
multipart uploads, paging, multi-level composition, and that boto3 never runs on the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storage_backends import AppendConflict, InvalidPath, InvalidRange, ObjectNotFound, StorageBackend
from storage_backends.filesystem import FilesystemBackend
from storage_backends.s3 import MIN_PART_SIZE, S3Backend
from tests.s3server import REGION, Bucket, moto_server, s3_bucket  # noqa: F401  (fixtures)

MiB = 1024 * 1024
S3_PREFIX = "dockyard/root"


# -- helpers --------------------------------------------------------------------------------
class Boom(Exception):
    """The failure a test stream raises part-way."""


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def stream(data: bytes, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def failing(data: bytes, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    """Yield `data`, then raise: a client that disconnects mid-upload."""
    async for piece in stream(data, chunk):
        yield piece
    raise Boom("the stream broke")


class Paused:
    """A stream that yields `pieces[:-1]`, says so (`reached`), and yields the last piece only
    once `release` is set: a client caught in the middle of a write."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces
        self.reached, self.release = asyncio.Event(), asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        for piece in self.pieces[:-1]:
            yield piece
        self.reached.set()
        await self.release.wait()
        yield self.pieces[-1]


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


@dataclass
class Store:
    """One storage place; `open()` gives another backend over it (another replica)."""

    kind: str
    open: Callable[[], StorageBackend]
    bucket: Bucket | None = None


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "filesystem":
        root = tmp_path / "store"
        return Store("filesystem", lambda: FilesystemBackend(root))
    bucket: Bucket = request.getfixturevalue("s3_bucket")
    return Store(
        "s3",
        lambda: S3Backend(bucket.name, prefix=S3_PREFIX, region=REGION, endpoint_url=bucket.server.url, part_size=MIN_PART_SIZE),
        bucket,
    )


@pytest.fixture
async def backend(store: Store) -> AsyncIterator[StorageBackend]:
    opened = store.open()
    yield opened
    await opened.close()


# -- whole objects --------------------------------------------------------------------------
async def test_a_marker_exists_empty_in_new_directories_and_is_idempotent(backend: StorageBackend) -> None:
    await backend.put_marker("deep/new/dirs/marker")
    assert await backend.exists("deep/new/dirs/marker")
    assert await backend.get_bytes("deep/new/dirs/marker") == b""
    await backend.put_marker("deep/new/dirs/marker")  # again: still there, still empty
    assert (await backend.stat("deep/new/dirs/marker")).size == 0
    assert await backend.list("deep/new/dirs") == ["marker"], "nothing but the marker: no temporary left beside it"


async def test_ensure_markers_create_once_and_say_which_they_made(backend: StorageBackend) -> None:
    assert await backend.ensure_markers(["m/new/dirs/marker", "m/other/new/dir/marker"]) == [True, True]
    assert await backend.ensure_markers(["m/new/dirs/marker", "m/other/new/dir/marker", "m/third"]) == [False, False, True]
    assert await backend.get_bytes("m/new/dirs/marker") == b""
    await backend.put_bytes("m/new/dirs/full", b"data")
    assert await backend.ensure_markers(["m/new/dirs/full"]) == [False], "an object already there is left alone"
    assert await backend.get_bytes("m/new/dirs/full") == b"data"
    assert await backend.ensure_markers([]) == []
    racing = await asyncio.gather(*(backend.ensure_markers(["m/raced"]) for _ in range(8)))
    assert any(made for [made] in racing) and await backend.exists("m/raced")
    assert sorted(await backend.list("m/new/dirs")) == ["full", "marker"]
    assert await backend.list("m/other/new/dir") == ["marker"]


async def test_stat_many_answers_each_path_in_order_with_none_where_nothing_is(backend: StorageBackend) -> None:
    await backend.put_bytes("sm/a", b"12345")
    await backend.put_marker("sm/dir/b")
    found = await backend.stat_many(["sm/a", "sm/missing", "sm/dir/b", "sm/dir", "nowhere/at/all"])
    assert [info.size if info else None for info in found] == [5, None, 0, None, None], "a directory is no object"
    assert await backend.stat_many([]) == []


async def test_put_get_stat_exists(backend: StorageBackend) -> None:
    before = time.time()
    assert await backend.put("obj/one", stream(b"hello world", chunk=3)) == 11
    assert await backend.get_bytes("obj/one") == b"hello world"
    info = await backend.stat("obj/one")
    assert info.size == 11
    assert before - 5 <= info.modified <= time.time() + 5
    assert await backend.exists("obj/one")
    await backend.put_bytes("obj/empty", b"")
    assert await backend.get_bytes("obj/empty") == b""
    assert (await backend.stat("obj/empty")).size == 0
    for missing in ("obj/none", "none/at/all", "obj"):  # "obj" is a directory, not an object
        assert not await backend.exists(missing)
        with pytest.raises(ObjectNotFound):
            await backend.get_bytes(missing)
        with pytest.raises(ObjectNotFound):
            await backend.stat(missing)


async def test_put_streams_many_chunks_of_any_size(backend: StorageBackend) -> None:
    data = payload(2 * MiB * 5 + 12345, seed=1)  # two and a bit S3 parts

    async def odd_chunks() -> AsyncIterator[bytes]:
        rnd, position = random.Random(2), 0
        while position < len(data):
            size = rnd.choice([0, 1, 100, 64 * 1024, 3 * MiB])
            yield data[position : position + size]
            position += size

    assert await backend.put("big/blob", odd_chunks()) == len(data)
    assert await collect(backend.read("big/blob")) == data
    # exactly one part, and one byte more
    for size in (MIN_PART_SIZE, MIN_PART_SIZE + 1):
        exact = payload(size, seed=size)
        assert await backend.put("big/exact", stream(exact, chunk=MiB)) == size
        assert hashlib.sha256(await collect(backend.read("big/exact"))).digest() == hashlib.sha256(exact).digest()


async def test_put_replaces_and_is_visible_only_when_complete(backend: StorageBackend) -> None:
    await backend.put_bytes("vis/a", b"old")
    new = payload(2 * MIN_PART_SIZE + 100, seed=3)
    reached, release = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield new[: MIN_PART_SIZE + 1]
        yield new[MIN_PART_SIZE + 1 : 2 * MIN_PART_SIZE + 1]  # S3 has uploaded parts by now
        reached.set()
        await release.wait()
        yield new[2 * MIN_PART_SIZE + 1 :]

    replacing = asyncio.create_task(backend.put("vis/a", slow()))
    creating = asyncio.create_task(backend.put("vis/b", stream(b"x")))
    await creating
    slow_fresh = Paused(b"partial", b" and the rest")
    fresh = asyncio.create_task(backend.put("vis/new/c", slow_fresh.chunks()))
    await asyncio.wait_for(reached.wait(), 20)
    await asyncio.wait_for(slow_fresh.reached.wait(), 20)
    assert await backend.get_bytes("vis/a") == b"old"
    assert (await backend.stat("vis/a")).size == 3
    assert await collect(backend.read("vis/a")) == b"old"
    assert not await backend.exists("vis/new/c")
    assert await backend.list("vis/new") == []
    release.set()
    slow_fresh.release.set()
    assert await replacing == len(new)
    assert await fresh == len(b"partial and the rest")
    assert await backend.get_bytes("vis/a") == new
    assert await backend.get_bytes("vis/new/c") == b"partial and the rest"
    assert await backend.list("vis") == ["a", "b", "new"]
    # a replacement by a smaller object leaves nothing of the bigger one
    assert await backend.put("vis/a", stream(b"tiny")) == 4
    assert await backend.get_bytes("vis/a") == b"tiny"
    assert (await backend.stat("vis/a")).size == 4


@pytest.mark.parametrize("size", [0, 1000, 2 * MIN_PART_SIZE + 5], ids=["at-once", "small", "multipart"])
async def test_failed_put_leaves_the_old_object_or_nothing(backend: StorageBackend, size: int) -> None:
    await backend.put_bytes("fail/a", b"old")
    with pytest.raises(Boom):
        await backend.put("fail/a", failing(payload(size)))
    assert await backend.get_bytes("fail/a") == b"old"
    with pytest.raises(Boom):
        await backend.put("fail/b", failing(payload(size)))
    assert not await backend.exists("fail/b")
    assert await backend.list("fail") == ["a"]


async def test_failed_put_in_a_new_directory_leaves_no_directory(backend: StorageBackend) -> None:
    await backend.put_bytes("faildir/keep", b"x")
    with pytest.raises(Boom):
        await backend.put("faildir/new/deeper/b", failing(b"some bytes"))
    assert not await backend.exists("faildir/new/deeper/b")
    assert await backend.list("faildir/new") == []
    assert await backend.list("faildir") == ["keep"]


# -- reads ----------------------------------------------------------------------------------
async def test_ranged_reads(backend: StorageBackend) -> None:
    data = payload(3 * MiB + 17, seed=4)  # more than one read chunk
    await backend.put("r/blob", stream(data, chunk=MiB))
    size = len(data)
    cases = [
        (0, None),
        (10, None),
        (10, 20),
        (0, size),
        (MiB - 5, 2 * MiB),
        (size - 1, 1),
        (size - 1, None),
        (size, None),
        (size, 0),
        (0, 0),
        (123, 0),
    ]
    for offset, length in cases:
        end = size if length is None else offset + length
        assert await collect(backend.read("r/blob", offset, length)) == data[offset:end], (offset, length)
    for offset, length in [(size + 1, None), (size - 10, 11), (size, 1), (size + 5, 0), (-1, None), (0, -1), (0, size + 1)]:
        with pytest.raises(InvalidRange):
            await collect(backend.read("r/blob", offset, length))
    await backend.put_bytes("r/empty", b"")
    assert await collect(backend.read("r/empty")) == b""
    assert await collect(backend.read("r/empty", 0, 0)) == b""
    for offset, length in [(0, 1), (1, None), (1, 0)]:
        with pytest.raises(InvalidRange):
            await collect(backend.read("r/empty", offset, length))


async def test_read_errors_are_raised_on_first_iteration(backend: StorageBackend) -> None:
    await backend.put_bytes("r2/x", b"0123456789")
    missing = backend.read("r2/missing")  # creating the iterator does not raise
    with pytest.raises(ObjectNotFound):
        await anext(missing)
    with pytest.raises(ObjectNotFound):
        await collect(backend.read("r2/missing", 5, 5))
    with pytest.raises(ObjectNotFound):
        await collect(backend.read("r2"))  # a directory
    out_of_range = backend.read("r2/x", 11)
    with pytest.raises(InvalidRange):
        await anext(out_of_range)


async def test_read_can_stop_early(backend: StorageBackend) -> None:
    data = payload(3 * MiB, seed=5)
    await backend.put("r3/x", stream(data, chunk=MiB))
    reader = backend.read("r3/x")
    first = await anext(reader)
    assert data.startswith(first) and first
    await reader.aclose()
    assert await collect(backend.read("r3/x", 1, 2)) == data[1:3]


# -- listing --------------------------------------------------------------------------------
LISTED_TREE = ["a", "b-1", "b.x", "c", "Z", "_u", "é", "b/inner", "d/e/f", "e/1", "e-/2", "e./3", "ee"]
LISTED = ["Z", "_u", "a", "b", "b-1", "b.x", "c", "d", "e", "e-", "e.", "ee", "é"]


async def make_listing_tree(backend: StorageBackend) -> None:
    await asyncio.gather(*(backend.put_bytes(f"l/{name}", name.encode()) for name in LISTED_TREE))
    await backend.append("l/upload", stream(b"in progress"))  # appendable: hidden
    await backend.append("l/e/upload", stream(b"in progress"))
    with pytest.raises(Boom):
        await backend.put("l/failed", failing(b"partial"))


async def test_list_immediate_children_sorted_by_byte(backend: StorageBackend) -> None:
    await make_listing_tree(backend)
    assert LISTED == sorted(LISTED, key=lambda name: name.encode())
    assert await backend.list("l") == LISTED
    assert await backend.list("l/e") == ["1"]
    assert await backend.list("l/d") == ["e"]
    assert await backend.list("l/d/e") == ["f"]
    assert await backend.list("l/missing") == []
    assert await backend.list("l/a") == []  # an object has no children
    assert await backend.list("l", limit=0) == []


async def test_list_start_after_and_limit_page_through(backend: StorageBackend) -> None:
    await make_listing_tree(backend)
    await assert_pages(backend)


PAGE_STARTS = ["", "A", "a", "b", "b-", "b-1", "b.", "b/", "bz", "e", "e-", "e.0", "zz", "é", "\U0010ffff"]


async def assert_pages(backend: StorageBackend, limits: list[int] | None = None, starts: list[str] = PAGE_STARTS) -> None:
    full = await backend.list("l")
    assert full == LISTED
    for limit in limits or range(1, len(full) + 2):
        pages: list[str] = []
        after: str | None = None
        while True:
            page = await backend.list("l", start_after=after, limit=limit)
            assert len(page) <= limit
            pages += page
            if len(page) < limit:
                break
            after = page[-1]
        assert pages == full, limit
    for after in starts:
        expected = [name for name in full if name > after]
        assert await backend.list("l", start_after=after) == expected, after
        assert await backend.list("l", start_after=after, limit=2) == expected[:2], after


# -- deletes and moves ----------------------------------------------------------------------
async def test_delete(backend: StorageBackend) -> None:
    await backend.put_bytes("del/a", b"1")
    await backend.put_bytes("del/sub/b", b"2")
    assert await backend.delete("del/a") is True
    assert await backend.delete("del/a") is False
    assert not await backend.exists("del/a")
    assert await backend.delete("del/missing/x") is False
    assert await backend.list("del") == ["sub"]
    assert await backend.delete("del/sub/b") is True
    assert await backend.list("del") == []


async def test_delete_of_a_directory_name_is_not_an_object(backend: StorageBackend) -> None:
    await backend.put_bytes("deldir/sub/b", b"2")
    assert await backend.delete("deldir/sub") is False
    assert await backend.get_bytes("deldir/sub/b") == b"2"


async def test_delete_tree(backend: StorageBackend) -> None:
    for name in ("t/x/1", "t/x/2/3", "t/x-y", "t/xx", "t/y"):
        await backend.put_bytes(name, b"data")
    await backend.append("t/x/up/data", stream(b"partial upload"))
    await backend.delete_tree("t/x")
    assert await backend.list("t") == ["x-y", "xx", "y"]
    assert not await backend.exists("t/x/1")
    assert not await backend.exists("t/x/2/3")
    assert await backend.append_size("t/x/up/data") == 0
    assert await backend.list("t/x") == []
    await backend.delete_tree("t/missing")
    await backend.delete_tree("t/y/not-a-directory")
    assert await backend.get_bytes("t/y") == b"data"


async def test_move(backend: StorageBackend) -> None:
    await backend.put_bytes("m/a/src", b"hello")
    await backend.put_bytes("m/dst", b"old")
    await backend.move("m/a/src", "m/dst")
    assert await backend.get_bytes("m/dst") == b"hello"
    assert not await backend.exists("m/a/src")
    big = payload(MIN_PART_SIZE + 3, seed=6)
    await backend.put("m/big", stream(big, chunk=MiB))
    await backend.move("m/big", "m/new/deep/big")
    assert await backend.get_bytes("m/new/deep/big") == big
    await backend.put_bytes("m/empty", b"")
    await backend.move("m/empty", "m/moved-empty")
    assert await backend.get_bytes("m/moved-empty") == b""
    with pytest.raises(ObjectNotFound):
        await backend.move("m/nothing", "m/other")
    assert not await backend.exists("m/other")


async def test_move_leaves_no_empty_source_directory(backend: StorageBackend) -> None:
    await backend.put_bytes("mv/a/src", b"hello")
    await backend.move("mv/a/src", "mv/b/dst")
    assert await backend.list("mv") == ["b"]


# -- appendable objects ---------------------------------------------------------------------
async def test_append_many_small_and_a_few_big_chunks_then_commit(backend: StorageBackend) -> None:
    path, expected, rnd = "up/1/data", bytearray(), random.Random(7)
    assert await backend.append_size(path) == 0
    assert await collect(backend.read_appended(path)) == b""

    async def add(data: bytes, chunk: int) -> None:
        expected.extend(data)
        assert await backend.append(path, stream(data, chunk)) == len(expected)
        assert await backend.append_size(path) == len(expected)

    for _ in range(30):  # many small PATCHes, together past S3's 5 MiB minimum part size
        await add(rnd.randbytes(rnd.randrange(1, 400_000)), 64 * 1024)
    assert len(expected) > MIN_PART_SIZE
    await add(b"", 1)
    await add(payload(2 * MIN_PART_SIZE + 7, seed=8), 64 * 1024)  # one big PATCH
    for _ in range(3):
        await add(rnd.randbytes(rnd.randrange(1, 100_000)), 10_000)
    await add(payload(MIN_PART_SIZE, seed=9), MiB)  # exactly one part
    await add(b"x", 1)

    assert await collect(backend.read_appended(path)) == expected
    # never visible under its own name
    assert not await backend.exists(path)
    assert await backend.list("up/1") == []
    assert not await backend.exists("blobs/final")

    await backend.commit_append(path, "blobs/final")
    assert (await backend.stat("blobs/final")).size == len(expected)
    assert hashlib.sha256(await collect(backend.read("blobs/final"))).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert await backend.append_size(path) == 0
    assert await collect(backend.read_appended(path)) == b""
    assert await backend.list("up/1") == []


@pytest.mark.parametrize("before", [1000, MIN_PART_SIZE + 1000], ids=["tail", "segment"])
@pytest.mark.parametrize("size", [0, 1000, 2 * MIN_PART_SIZE + 10], ids=["at-once", "small", "big"])
async def test_append_is_all_or_nothing(backend: StorageBackend, before: int, size: int) -> None:
    path = "up/2/data"
    first = payload(before, seed=10)
    assert await backend.append(path, stream(first)) == before
    with pytest.raises(Boom):
        await backend.append(path, failing(payload(size, seed=11)))
    assert await backend.append_size(path) == before
    assert await collect(backend.read_appended(path)) == first
    rest = payload(MIN_PART_SIZE + 1, seed=12)
    assert await backend.append(path, stream(rest)) == before + len(rest)
    await backend.commit_append(path, "blobs/after-failure")
    assert await backend.get_bytes("blobs/after-failure") == first + rest


async def test_cancelled_writes_change_nothing(backend: StorageBackend) -> None:
    """A client that disconnects mid-upload cancels the request's task: all or nothing still holds."""
    await backend.put_bytes("cancel/blob", b"old")
    await backend.append("cancel/up", stream(b"kept"))
    data = payload(2 * MIN_PART_SIZE + 1, seed=21)
    for write in (lambda chunks: backend.put("cancel/blob", chunks), lambda chunks: backend.append("cancel/up", chunks)):
        reached = asyncio.Event()

        async def hanging() -> AsyncIterator[bytes]:
            async for chunk in stream(data, MiB):
                yield chunk
            reached.set()
            await asyncio.Event().wait()  # the client never sends the rest
            yield b"never"

        task = asyncio.create_task(write(hanging()))
        await asyncio.wait_for(reached.wait(), 20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await backend.get_bytes("cancel/blob") == b"old"
    assert await backend.append_size("cancel/up") == 4
    assert await collect(backend.read_appended("cancel/up")) == b"kept"
    assert await backend.list("cancel") == ["blob"]


async def test_append_shows_each_chunk_to_its_observer_in_order_off_the_event_loop(backend: StorageBackend) -> None:
    """What the uploads' running digest relies on: every appended byte, in order, once; and a
    failing observer fails the append, which then appends nothing."""
    loop_thread = threading.get_ident()
    seen, threads = hashlib.sha256(), set()

    def observe(chunk: bytes) -> None:
        seen.update(chunk)
        threads.add(threading.get_ident())

    data = payload(2 * MIN_PART_SIZE + MiB, seed=31)
    assert await backend.append("obs/data", stream(data, MiB), observe=observe) == len(data)
    assert seen.hexdigest() == hashlib.sha256(data).hexdigest()
    assert loop_thread not in threads, "1 MiB chunks are observed in a worker thread"

    def refuse(chunk: bytes) -> None:
        raise Boom()

    with pytest.raises(Boom):
        await backend.append("obs/data", stream(b"more" * 100_000, MiB), observe=refuse)
    assert await backend.append_size("obs/data") == len(data)
    assert await collect(backend.read_appended("obs/data")) == data


async def test_append_after_a_failed_first_append(backend: StorageBackend) -> None:
    with pytest.raises(Boom):
        await backend.append("up/3/data", failing(b"abc"))
    assert await backend.append_size("up/3/data") == 0
    assert await backend.append("up/3/data", stream(b"def")) == 3
    assert await collect(backend.read_appended("up/3/data")) == b"def"


async def test_commit_append_edge_cases(backend: StorageBackend) -> None:
    await backend.commit_append("up/4/nothing", "blobs/empty")  # nothing appended: empty object
    assert await backend.get_bytes("blobs/empty") == b""
    await backend.put_bytes("blobs/replaced", b"old content")
    await backend.append("up/4/data", stream(b"new"))
    await backend.commit_append("up/4/data", "blobs/replaced")
    assert await backend.get_bytes("blobs/replaced") == b"new"
    big = payload(MIN_PART_SIZE + 5, seed=13)  # a single segment, no tail
    await backend.append("up/5/data", stream(big, MiB))
    await backend.commit_append("up/5/data", "blobs/one-segment")
    assert await backend.get_bytes("blobs/one-segment") == big


async def test_commit_append_appears_atomically(backend: StorageBackend) -> None:
    await backend.put_bytes("blobs/atomic", b"old")
    data = payload(2 * MIN_PART_SIZE + 99, seed=14)
    await backend.append("up/6/data", stream(data[:MIN_PART_SIZE]))
    await backend.append("up/6/data", stream(data[MIN_PART_SIZE:]))
    seen: set[bytes] = set()
    done = False

    async def watch() -> None:
        while not done:
            try:
                seen.add(hashlib.sha256(await backend.get_bytes("blobs/atomic")).digest())
            except ObjectNotFound:
                seen.add(b"missing")
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.01)
    await backend.commit_append("up/6/data", "blobs/atomic")
    done = True
    await watcher
    assert seen <= {hashlib.sha256(b"old").digest(), hashlib.sha256(data).digest()}
    assert await backend.get_bytes("blobs/atomic") == data


async def test_abort_append(backend: StorageBackend) -> None:
    await backend.append("up/7/data", stream(payload(MIN_PART_SIZE + 10, seed=15)))
    await backend.append("up/7/data", stream(b"tail"))
    await backend.abort_append("up/7/data")
    assert await backend.append_size("up/7/data") == 0
    assert await collect(backend.read_appended("up/7/data")) == b""
    assert await backend.list("up/7") == []
    await backend.abort_append("up/7/data")  # idempotent
    await backend.abort_append("up/never/data")
    assert await backend.append("up/7/data", stream(b"again")) == 5
    await backend.commit_append("up/7/data", "blobs/again")
    assert await backend.get_bytes("blobs/again") == b"again"


async def test_another_replica_continues_an_upload(store: Store, backend: StorageBackend) -> None:
    other = store.open()
    try:
        parts = [payload(300_000, seed=16), payload(MIN_PART_SIZE + 1, seed=17), payload(4000, seed=18)]
        await backend.append("up/8/data", stream(parts[0]))
        assert await other.append_size("up/8/data") == len(parts[0])
        await other.append("up/8/data", stream(parts[1]))
        assert await backend.append_size("up/8/data") == len(parts[0]) + len(parts[1])
        await backend.append("up/8/data", stream(parts[2]))
        whole = b"".join(parts)
        assert await collect(other.read_appended("up/8/data")) == whole
        await other.commit_append("up/8/data", "blobs/replicated")
        assert await backend.get_bytes("blobs/replicated") == whole
        assert await backend.append_size("up/8/data") == 0
    finally:
        await other.close()


async def test_append_at_another_size_is_refused_and_appends_nothing(backend: StorageBackend) -> None:
    assert await backend.append("up/9/data", stream(b"first"), at=0) == 5
    for stale in (0, 4, 6):
        with pytest.raises(AppendConflict) as refused:
            await backend.append("up/9/data", stream(b"late"), at=stale)
        assert refused.value.size == 5
    assert await backend.append("up/9/data", stream(b" second"), at=5) == 12
    assert await collect(backend.read_appended("up/9/data")) == b"first second"


async def test_filesystem_appends_are_exclusive_across_processes(tmp_path: Path) -> None:
    """The filesystem says `exclusive_appends`: a second append to an object (here through
    another backend over the same directory: another process) while one is streaming is
    refused at once, and the first one's bytes are all there is."""
    backend, other = FilesystemBackend(tmp_path), FilesystemBackend(tmp_path)
    assert backend.exclusive_appends
    slow = Paused(b"first half, ", b"second half")
    try:
        first = asyncio.create_task(backend.append("up/10/data", slow.chunks(), at=0))
        await slow.reached.wait()
        with pytest.raises(AppendConflict) as refused:
            await other.append("up/10/data", stream(b"intruder"), at=0)
        assert refused.value.size is None, "refused for the lock held, not for a size"
        slow.release.set()
        assert await first == 23
        assert await collect(other.read_appended("up/10/data")) == b"first half, second half"
        assert await other.append("up/10/data", stream(b"!"), at=23) == 24, "the lock went with the first append"
    finally:
        slow.release.set()


# -- paths ----------------------------------------------------------------------------------
BAD_PATHS = ["", "/abs", "a//b", "a/", "../x", "a/../b", "a/./b", "..", ".hidden", "a/.hidden", "a\\b", "a\x00b"]


@pytest.mark.parametrize("bad", BAD_PATHS)
async def test_invalid_paths_are_refused_by_every_call(backend: StorageBackend, bad: str) -> None:
    await backend.put_bytes("ok/src", b"source")
    await backend.append("ok/up", stream(b"appended"))
    calls = {
        "put": lambda: backend.put(bad, stream(b"x")),
        "put_bytes": lambda: backend.put_bytes(bad, b"x"),
        "get_bytes": lambda: backend.get_bytes(bad),
        "read": lambda: collect(backend.read(bad)),
        "read range": lambda: collect(backend.read(bad, 1, 1)),
        "stat": lambda: backend.stat(bad),
        "exists": lambda: backend.exists(bad),
        "list": lambda: backend.list(bad),
        "delete": lambda: backend.delete(bad),
        "delete_tree": lambda: backend.delete_tree(bad),
        "move from": lambda: backend.move(bad, "ok/moved"),
        "move to": lambda: backend.move("ok/src", bad),
        "append": lambda: backend.append(bad, stream(b"x")),
        "append_size": lambda: backend.append_size(bad),
        "read_appended": lambda: collect(backend.read_appended(bad)),
        "commit_append from": lambda: backend.commit_append(bad, "ok/committed"),
        "commit_append to": lambda: backend.commit_append("ok/up", bad),
        "abort_append": lambda: backend.abort_append(bad),
        "local_file": lambda: backend.local_file(bad),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidPath):
            await call()
            pytest.fail(f"{name} accepted {bad!r}")
    # A backend without redirects may answer None without looking at the path; never a URL.
    try:
        assert await backend.redirect_url(bad) is None
    except InvalidPath:
        pass
    # nothing was touched
    assert await backend.get_bytes("ok/src") == b"source"
    assert await backend.append_size("ok/up") == len(b"appended")
    assert await backend.list("ok") == ["src"]


# -- serving --------------------------------------------------------------------------------
async def test_local_file(store: Store, backend: StorageBackend) -> None:
    await backend.put_bytes("lf/blob", b"on disk")
    local = await backend.local_file("lf/blob")
    if store.kind == "filesystem":
        assert local is not None and Path(local).read_bytes() == b"on disk"
        assert await backend.local_file("lf/missing") is None
    else:
        assert local is None


async def test_redirect_url(store: Store, backend: StorageBackend) -> None:
    data = payload(100_000, seed=19)
    await backend.put_bytes("rd/blob", data)
    url = await backend.redirect_url("rd/blob")
    if store.kind == "filesystem":
        assert url is None
        return
    assert url is not None and url.startswith(store.bucket.server.url)
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200
            assert await response.read() == data
        async with session.get(url, headers={"Range": "bytes=5-9"}) as response:
            assert response.status == 206
            assert await response.read() == data[5:10]
        head = await backend.redirect_url("rd/blob", method="HEAD")
        async with session.head(head) as response:
            assert response.status == 200
            assert int(response.headers["Content-Length"]) == len(data)
    assert store.bucket is not None
    plain = S3Backend(store.bucket.name, prefix=S3_PREFIX, endpoint_url=store.bucket.server.url, redirect=False)
    try:
        assert await plain.redirect_url("rd/blob") is None
    finally:
        await plain.close()


# -- S3 only --------------------------------------------------------------------------------
@pytest.fixture
async def s3(s3_bucket: Bucket) -> AsyncIterator[S3Backend]:
    backend = S3Backend(s3_bucket.name, prefix=S3_PREFIX, region=REGION, endpoint_url=s3_bucket.server.url, part_size=MIN_PART_SIZE)
    yield backend
    await backend.close()


@pytest.fixture
def raw(s3_bucket: Bucket) -> Any:
    """A plain boto3 client on the test's moto server, to look at the bucket directly."""
    return s3_bucket.server.client()


def all_keys(raw, bucket: str) -> list[str]:
    pages = raw.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", ())]


def unfinished_uploads(raw, bucket: str) -> list[str]:
    return [upload["Key"] for upload in raw.list_multipart_uploads(Bucket=bucket).get("Uploads", ())]


async def test_s3_layout_of_keys_and_append_state(s3: S3Backend, raw, s3_bucket: Bucket) -> None:
    await s3.put_bytes("repositories/x/tag", b"t")
    big = payload(MIN_PART_SIZE + 1, seed=20)
    await s3.append("repositories/x/_uploads/u/data", stream(b"small"))
    await s3.append("repositories/x/_uploads/u/data", stream(big))
    await s3.append("repositories/x/_uploads/u/data", stream(b"tail"))
    keys = all_keys(raw, s3_bucket.name)
    assert all(key.startswith(S3_PREFIX + "/") for key in keys)
    hidden = f"{S3_PREFIX}/repositories/x/_uploads/u/.data.append/"
    state = json.loads(raw.get_object(Bucket=s3_bucket.name, Key=hidden + "state.json")["Body"].read())
    assert state["format"] == 1 and state["size"] == 5 + len(big) + 4
    assert [segment["size"] for segment in state["segments"]] == [5 + len(big)]
    assert [piece["size"] for piece in state["tail"]] == [4]
    named = {hidden + item["name"] for item in state["segments"] + state["tail"]}
    assert set(keys) == {f"{S3_PREFIX}/repositories/x/tag", hidden + "state.json", *named}
    await s3.commit_append("repositories/x/_uploads/u/data", "blobs/b")
    assert sorted(all_keys(raw, s3_bucket.name)) == [f"{S3_PREFIX}/blobs/b", f"{S3_PREFIX}/repositories/x/tag"]
    assert unfinished_uploads(raw, s3_bucket.name) == []


async def test_s3_failed_writes_leave_nothing_behind(s3: S3Backend, raw, s3_bucket: Bucket) -> None:
    hung = asyncio.Event()

    async def hanging() -> AsyncIterator[bytes]:
        yield payload(2 * MIN_PART_SIZE + 1)
        hung.set()
        await asyncio.Event().wait()
        yield b""

    cancelled = asyncio.create_task(s3.put("f/cancelled", hanging()))
    await asyncio.wait_for(hung.wait(), 20)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    with pytest.raises(Boom):
        await s3.put("f/blob", failing(payload(2 * MIN_PART_SIZE + 1)))
    await s3.append("f/up", stream(b"small"))
    with pytest.raises(Boom):
        await s3.append("f/up", failing(payload(2 * MIN_PART_SIZE + 1)))
    with pytest.raises(Boom):
        await s3.append("f/up", failing(b"tiny"))
    assert unfinished_uploads(raw, s3_bucket.name) == []
    keys = all_keys(raw, s3_bucket.name)
    assert len(keys) == 2 and all(key.startswith(f"{S3_PREFIX}/f/.up.append/") for key in keys)
    await s3.abort_append("f/up")
    assert all_keys(raw, s3_bucket.name) == []


async def test_s3_many_small_appends_keep_a_bounded_tail(s3: S3Backend, raw, s3_bucket: Bucket) -> None:
    expected = b""
    for index in range(40):  # past MAX_TAIL_PIECES (32): the tail is rewritten as one piece
        piece = payload(1000, seed=index)
        expected += piece
        await s3.append("many/up", stream(piece))
    state = json.loads(raw.get_object(Bucket=s3_bucket.name, Key=f"{S3_PREFIX}/many/.up.append/state.json")["Body"].read())
    assert len(state["tail"]) <= 32 and state["segments"] == []
    assert len(all_keys(raw, s3_bucket.name)) == len(state["tail"]) + 1  # replaced pieces deleted
    assert await collect(s3.read_appended("many/up")) == expected
    await s3.commit_append("many/up", "many/blob")
    assert await s3.get_bytes("many/blob") == expected


@pytest.mark.parametrize("page_size", [1, 3])
async def test_s3_listing_across_small_pages(s3: S3Backend, page_size: int) -> None:
    """Names are merged across pages: `b` (S3 key `b/`) comes after `b-1` and `b.x` in S3."""
    await make_listing_tree(s3)
    s3._page_size = page_size
    await assert_pages(s3, limits=[1, 2, 5, 20], starts=["", "b", "b-1", "b/", "e", "e.0"])


async def test_s3_commit_with_more_parts_than_one_upload_allows(s3: S3Backend, raw, s3_bucket: Bucket) -> None:
    s3._max_parts = 2  # S3 allows 10 000; force composition in levels through scratch objects
    pieces = [payload(MIN_PART_SIZE + index, seed=30 + index) for index in range(3)] + [b"tail"]
    for piece in pieces:
        await s3.append("levels/up", stream(piece, MiB))
    await s3.commit_append("levels/up", "levels/blob")
    assert await s3.get_bytes("levels/blob") == b"".join(pieces)
    assert all_keys(raw, s3_bucket.name) == [f"{S3_PREFIX}/levels/blob"]
    assert unfinished_uploads(raw, s3_bucket.name) == []


async def test_s3_big_objects_are_copied_in_ranges(s3: S3Backend, raw, s3_bucket: Bucket) -> None:
    s3._copy_part_size = MIN_PART_SIZE  # 512 MiB in production
    data = payload(2 * MIN_PART_SIZE + 3, seed=40)
    await s3.append("ranges/up", stream(data, MiB))  # one segment, copied as two ranges
    await s3.commit_append("ranges/up", "ranges/blob")
    assert await s3.get_bytes("ranges/blob") == data
    await s3.move("ranges/blob", "ranges/moved")
    assert await s3.get_bytes("ranges/moved") == data
    assert all_keys(raw, s3_bucket.name) == [f"{S3_PREFIX}/ranges/moved"]
    assert unfinished_uploads(raw, s3_bucket.name) == []


async def test_s3_boto3_never_runs_on_the_event_loop(s3: S3Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.client
    import botocore.signers

    threads: set[int] = set()
    make_api_call = botocore.client.BaseClient._make_api_call
    presign = botocore.signers.RequestSigner.generate_presigned_url

    def recording_call(self, *args, **kwargs):
        threads.add(threading.get_ident())
        return make_api_call(self, *args, **kwargs)

    def recording_presign(self, *args, **kwargs):
        threads.add(threading.get_ident())
        return presign(self, *args, **kwargs)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording_call)
    monkeypatch.setattr(botocore.signers.RequestSigner, "generate_presigned_url", recording_presign)
    await s3.put("loop/a", stream(payload(MIN_PART_SIZE + 1), MiB))
    await s3.get_bytes("loop/a")
    await collect(s3.read("loop/a", 3, 5))
    await s3.stat("loop/a")
    await s3.list("loop")
    await s3.append("loop/up", stream(payload(MIN_PART_SIZE + 1), MiB))
    await s3.append("loop/up", stream(b"tail"))
    await collect(s3.read_appended("loop/up"))
    await s3.commit_append("loop/up", "loop/b")
    await s3.move("loop/b", "loop/c")
    await s3.redirect_url("loop/c")
    await s3.delete("loop/c")
    await s3.delete_tree("loop")
    assert threads and threading.get_ident() not in threads
