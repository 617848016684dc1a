"""Crash-safe file writes: temp name in the same directory tree, fsync, rename, fsync the directory.

A reader never sees a half-written file: it sees the old one or the new one. A temp file left by
a process killed mid-write has a `.tmp-` name that nothing reads and `sweep_temp_files` removes.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import time
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def temp_name(tag: str = "") -> str:
    """A name no other writer (process or thread) picks: pid plus random token."""
    return f"{TEMP_PREFIX}{tag}{'-' if tag else ''}{os.getpid()}-{secrets.token_hex(6)}"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_temp(directory: Path, data: bytes, mode: int = 0o644) -> Path:
    """`data` in a new fsynced temp file in `directory`; the caller renames it into place."""
    path = directory / temp_name()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically (readers see old or new, never a mix)."""
    temp = write_temp(path.parent, data, mode)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def create_if_absent(path: Path, data: bytes, mode: int = 0o644) -> bool:
    """Create `path` with `data` unless it exists; never clobbers a concurrent writer's file.

    (A link() of a complete temp file is atomic and fails when the name exists.)
    """
    if path.exists():
        return False
    temp = write_temp(path.parent, data, mode)
    try:
        os.link(temp, path)
        created = True
    except FileExistsError:
        created = False
    finally:
        temp.unlink(missing_ok=True)
    if created:
        fsync_dir(path.parent)
    return created


def sweep_temp_files(directory: Path, older_than: float = 3600.0) -> None:
    """Remove `.tmp-*` files in `directory` older than `older_than` seconds (left by killed writers)."""
    limit = time.time() - older_than
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
            try:
                if entry.stat(follow_symlinks=False).st_mtime < limit:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass


_libc: ctypes.CDLL | None = None


def syncfs(directory: Path) -> None:
    """Flush the filesystem holding `directory` (syncfs(2)); falls back to sync()."""
    global _libc
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            if _libc is None:
                _libc = ctypes.CDLL(None, use_errno=True)
            if _libc.syncfs(fd) == 0:
                return
        except (OSError, AttributeError):
            pass
        os.sync()
    finally:
        os.close(fd)
