"""Local-disk backend: the embedded default.

Atomic writes are a temporary file beside the destination, fsync, rename, then fsync of the
directory, so a kill -9 or power loss leaves either the old object or the new one. Blocking
file calls run in the default thread pool, never on the event loop. Temporary and appendable
files carry a leading `.` and are therefore never listed.

A delete removes the directories it leaves empty (so listings show no dead prefixes). A write
beside it may therefore find the directory it has just made gone before its first file lands
in it; every write makes its directory and creates its file through `_in_directory`, which
makes the directory again and retries when that happens. Once a file is in a directory, no
prune can remove it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import os
import shutil
import stat
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TypeVar

from .base import AppendConflict, InvalidRange, ObjectInfo, ObjectNotFound, StorageBackend, StorageFull, batched, check_path, observe_all

READ_CHUNK = 1024 * 1024
DIRECTORY_RACE_RETRIES = 50
T = TypeVar("T")


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def _space_for(path: str) -> Iterator[None]:
    """A full disk (or quota) while writing `path` is StorageFull, not an anonymous OSError."""
    try:
        yield
    except OSError as error:
        if error.errno in NO_SPACE:
            raise StorageFull(f"no space left to write {path}: {error.strerror}") from None
        raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return  # what was renamed into it was deleted meanwhile, and the directory pruned
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _in_directory(directory: Path, create: Callable[[], T], source: Path | None = None) -> T:
    """`create()` (which makes a file in `directory`, by O_CREAT or by renaming `source` into
    it) after making the directory; again if a concurrent delete pruned the directory in between."""
    for _ in range(DIRECTORY_RACE_RETRIES):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, FileNotFoundError):
            continue  # a parent was pruned while mkdir walked down, or the directory went after EEXIST
        try:
            return create()
        except FileNotFoundError:
            if source is not None and not source.exists():
                raise  # not the directory: the file to rename is gone
    directory.mkdir(parents=True, exist_ok=True)
    return create()


async def _write_batch(fd: int, pieces: list[bytes], observe: Callable[[bytes], None] | None = None) -> None:
    """Write the pieces (after `observe` saw each) in a worker thread; if cancelled, wait for
    the thread before returning, so the caller never closes `fd` while a write to it is still
    running."""
    future = asyncio.get_running_loop().run_in_executor(None, _observe_and_write, fd, pieces, observe)
    try:
        await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


async def _read_up_to(handle: BinaryIO, remaining: int) -> AsyncIterator[bytes]:
    """Stream `remaining` bytes from the handle's position, reading in a worker thread."""
    while remaining > 0:
        chunk = await asyncio.to_thread(handle.read, min(READ_CHUNK, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


def _regular_file_info(full: Path) -> ObjectInfo | None:
    try:
        result = os.stat(full)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return ObjectInfo(size=result.st_size, modified=result.st_mtime) if stat.S_ISREG(result.st_mode) else None


def _observe_and_write(fd: int, pieces: list[bytes], observe: Callable[[bytes], None] | None) -> None:
    if observe is not None:
        observe_all(observe, pieces)
    _write_all(fd, pieces)
    _start_writeback(fd)


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range (Linux), or None where there is none."""
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int) -> bool:
    """Have the kernel start writing the file's dirty pages to the disk now, without waiting
    for them (sync_file_range with SYNC_FILE_RANGE_WRITE over the whole file). A large blob
    then reaches the disk while the rest of it is still arriving, and the fsync that ends an
    upload waits for the last megabytes only, not for all of them (docker-pattern pushes of
    4 x 64 MiB: +8 % in the median of 6 and 8 alternating rounds). Durability is unchanged:
    the fsync still comes before anything is acknowledged. True if writeback was started."""
    function = _sync_file_range()
    return function is not None and function(fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0


def _write_all(fd: int, pieces: Sequence[bytes]) -> None:
    """All of `pieces`, in order, with as few writev calls as the kernel allows."""
    views = [memoryview(piece) for piece in pieces if piece]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            del views[0]
        if written:
            views[0] = views[0][written:]


class FilesystemBackend(StorageBackend):
    name = "filesystem"
    exclusive_appends = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _full(self, path: str) -> Path:
        return self.root / check_path(path)

    def _appendable(self, path: str) -> Path:
        full = self._full(path)
        return full.with_name(f".{full.name}.append")

    # -- whole objects -------------------------------------------------------------------
    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        with _space_for(path):
            return await self._put(path, chunks)

    async def _put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        target = self._full(path)
        # A short temporary name: the target's own name may already be near NAME_MAX (255).
        temporary = target.with_name(f".tmp-{uuid.uuid4().hex}")
        fd = await asyncio.to_thread(_in_directory, target.parent, lambda: os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        size = 0
        try:
            async for batch in batched(chunks):
                await _write_batch(fd, batch)
                size += sum(map(len, batch))
            await asyncio.to_thread(os.fsync, fd)
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            self._prune_empty_parents(target.parent)
            raise
        os.close(fd)
        await asyncio.to_thread(self._publish, temporary, target)
        return size

    @staticmethod
    def _publish(temporary: Path, target: Path) -> None:
        os.replace(temporary, target)
        _fsync_dir(target.parent)

    async def put_bytes(self, path: str, data: bytes) -> None:
        """A small object in one worker-thread hop (the metadata writes of every request)."""
        target = self._full(path)
        with _space_for(path):
            await asyncio.to_thread(self._put_small, target, data)

    async def put_marker(self, path: str) -> None:
        """Created in place (no temporary, no rename, no data to sync): an empty file exists
        whole or not at all; only the directory entry is synced."""
        target = self._full(path)
        with _space_for(path):
            await asyncio.to_thread(self._put_marker, target)

    async def stat_many(self, paths: Sequence[str]) -> list[ObjectInfo | None]:
        fulls = [self._full(path) for path in paths]
        return await asyncio.to_thread(lambda: [_regular_file_info(full) for full in fulls])

    async def ensure_markers(self, paths: Sequence[str]) -> list[bool]:
        targets = [self._full(path) for path in paths]
        with _space_for(", ".join(paths)):
            return await asyncio.to_thread(self._ensure_markers, targets)

    @staticmethod
    def _ensure_markers(targets: list[Path]) -> list[bool]:
        made = [False] * len(targets)
        for index, target in enumerate(targets):
            if not target.is_file():  # the common case: one stat, in the same hop as the create would be
                os.close(_in_directory(target.parent, functools.partial(os.open, target, os.O_WRONLY | os.O_CREAT, 0o644)))
                made[index] = True
        for directory in dict.fromkeys(target.parent for target, new in zip(targets, made) if new):
            _fsync_dir(directory)
        return made

    @staticmethod
    def _put_marker(target: Path) -> None:
        os.close(_in_directory(target.parent, lambda: os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)))
        _fsync_dir(target.parent)

    def _put_small(self, target: Path, data: bytes) -> None:
        temporary = target.with_name(f".tmp-{uuid.uuid4().hex}")
        fd = _in_directory(target.parent, lambda: os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        try:
            _write_all(fd, [data])
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        os.close(fd)
        self._publish(temporary, target)

    async def get_bytes(self, path: str) -> bytes:
        full = self._full(path)
        try:
            return await asyncio.to_thread(full.read_bytes)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(path) from None

    async def read(self, path: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        full = self._full(path)
        try:
            handle = await asyncio.to_thread(open, full, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(path) from None
        try:
            size = os.fstat(handle.fileno()).st_size
            if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
                raise InvalidRange(f"range {offset}+{length} outside object of {size} bytes")
            handle.seek(offset)
            async for chunk in _read_up_to(handle, size - offset if length is None else length):
                yield chunk
        finally:
            handle.close()

    async def stat(self, path: str) -> ObjectInfo:
        info = await asyncio.to_thread(_regular_file_info, self._full(path))
        if info is None:
            raise ObjectNotFound(path)
        return info

    async def list(self, prefix: str, *, start_after: str | None = None, limit: int | None = None) -> list[str]:
        directory = self._full(prefix)

        def scan() -> list[str]:
            try:
                names = sorted(entry.name for entry in os.scandir(directory) if not entry.name.startswith("."))
            except (FileNotFoundError, NotADirectoryError):
                return []
            if start_after is not None:
                names = [name for name in names if name > start_after]
            return names if limit is None else names[:limit]

        return await asyncio.to_thread(scan)

    async def delete(self, path: str) -> bool:
        full = self._full(path)
        try:
            await asyncio.to_thread(full.unlink)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        await asyncio.to_thread(self._prune_empty_parents, full.parent)
        return True

    def _prune_empty_parents(self, directory: Path) -> None:
        """Remove directories a delete left empty, so listings do not show dead prefixes."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    async def delete_tree(self, prefix: str) -> None:
        full = self._full(prefix)
        await asyncio.to_thread(shutil.rmtree, full, True)
        await asyncio.to_thread(self._prune_empty_parents, full.parent)

    async def move(self, source: str, destination: str) -> None:
        with _space_for(destination):
            await self._move(source, destination)

    async def _move(self, source: str, destination: str) -> None:
        src, dst = self._full(source), self._full(destination)

        def rename() -> None:
            if not src.is_file():
                raise ObjectNotFound(source)
            try:
                _in_directory(dst.parent, lambda: os.replace(src, dst), source=src)
            except FileNotFoundError:
                raise ObjectNotFound(source) from None
            _fsync_dir(dst.parent)
            self._prune_empty_parents(src.parent)

        await asyncio.to_thread(rename)

    # -- appendable objects ------------------------------------------------------------------
    # The data file may hold a torn tail after kill -9 in the middle of an append; the
    # committed length lives in a sidecar written atomically after the data is fsynced, and
    # every append first cuts the data back to it. So a crash never exposes half a chunk.
    def _committed_size_file(self, path: str) -> Path:
        full = self._full(path)
        return full.with_name(f".{full.name}.size")

    def _committed_size(self, path: str) -> int:
        try:
            return int(self._committed_size_file(path).read_text())
        except FileNotFoundError:
            return 0

    def _record_size(self, path: str, size: int) -> None:
        record = self._committed_size_file(path)
        temporary = record.with_name(f"{record.name}.tmp-{uuid.uuid4().hex}")
        with open(temporary, "w") as handle:
            handle.write(str(size))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, record)

    async def append(self, path: str, chunks: AsyncIterable[bytes], *, at: int | None = None,
                     observe: Callable[[bytes], None] | None = None) -> int:  # fmt: skip
        with _space_for(path):
            return await self._append(path, chunks, at, observe)

    async def _append(self, path: str, chunks: AsyncIterable[bytes], at: int | None, observe: Callable[[bytes], None] | None) -> int:
        fd, start = await asyncio.to_thread(self._open_appendable, path, at)
        try:  # closing the descriptor releases the lock
            os.ftruncate(fd, start)
            os.lseek(fd, start, os.SEEK_SET)
            size = start
            try:
                async for batch in batched(chunks):
                    await _write_batch(fd, batch, observe)
                    size += sum(map(len, batch))
                await asyncio.to_thread(self._sync_and_record, fd, path, size)
            except BaseException:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
        return size

    def _open_appendable(self, path: str, at: int | None) -> tuple[int, int]:
        """The appendable file, open and exclusively locked (flock: held across processes, so
        the worker processes and replicas on one file system append one at a time), with the
        size committed so far; AppendConflict when it is locked or not at `at`."""
        target = self._appendable(path)
        fd = _in_directory(target.parent, lambda: os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AppendConflict(path, None) from None
            start = self._committed_size(path)
            if at is not None and start != at:
                raise AppendConflict(path, start)
        except BaseException:
            os.close(fd)
            raise
        return fd, start

    def _sync_and_record(self, fd: int, path: str, size: int) -> None:
        os.fsync(fd)
        self._record_size(path, size)  # under the lock still: the next append starts from it

    async def append_size(self, path: str) -> int:
        return await asyncio.to_thread(self._committed_size, path)

    async def read_appended(self, path: str) -> AsyncIterator[bytes]:
        target = self._appendable(path)
        remaining = await asyncio.to_thread(self._committed_size, path)
        try:
            handle = await asyncio.to_thread(open, target, "rb")
        except FileNotFoundError:
            return
        try:
            async for chunk in _read_up_to(handle, remaining):
                yield chunk
        finally:
            handle.close()

    async def commit_append(self, path: str, destination: str) -> None:
        source, target = self._appendable(path), self._full(destination)

        def publish() -> None:
            size = self._committed_size(path)
            # nothing appended yet: commit an empty object
            fd = _in_directory(source.parent, lambda: os.open(source, os.O_WRONLY | os.O_CREAT, 0o644))
            try:
                os.ftruncate(fd, size)  # drop any torn tail left by a crash
                os.fsync(fd)
            finally:
                os.close(fd)
            _in_directory(target.parent, lambda: os.replace(source, target), source=source)
            _fsync_dir(target.parent)
            self._committed_size_file(path).unlink(missing_ok=True)

        with _space_for(destination):
            await asyncio.to_thread(publish)

    async def abort_append(self, path: str) -> None:
        await asyncio.to_thread(self._appendable(path).unlink, True)
        await asyncio.to_thread(self._committed_size_file(path).unlink, True)

    async def reclaim_leftovers(self, older_than: float, *, dry_run: bool = False, now: float | None = None) -> tuple[int, int]:
        """The `.tmp-*` files of writes that never reached their rename (and size-record temporaries)."""
        cutoff = (time.time() if now is None else now) - older_than

        def sweep() -> tuple[int, int]:
            count = size = 0
            for directory, _, files in os.walk(self.root):
                for name in files:
                    if not (name.startswith(".tmp-") or ".size.tmp-" in name):
                        continue
                    path = Path(directory, name)
                    try:
                        info = path.stat()
                    except FileNotFoundError:
                        continue  # published or cleaned up meanwhile
                    if info.st_mtime > cutoff:
                        continue
                    if not dry_run:
                        path.unlink(missing_ok=True)
                        self._prune_empty_parents(path.parent)
                    count, size = count + 1, size + info.st_size
            return count, size

        return await asyncio.to_thread(sweep)

    async def local_file(self, path: str) -> str | None:
        full = self._full(path)
        return str(full) if await asyncio.to_thread(full.is_file) else None
