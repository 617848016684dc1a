"""Advisory file locks that several `dockyard` processes (and threads) agree on.

`FileLock` is flock(2) through `fcntl.flock`: a lock belongs to one open file description, so
two `FileLock`s on the same path exclude each other even inside one process (POSIX `fcntl`
record locks would not), and the kernel drops it when its holder dies (kill -9 included).

Lock files that are per object (one per blob being ingested, one per snapshot being unpacked)
are unlinked by their holder on release, so they do not pile up. That is safe because a waiter
that wins the lock checks that the path still names the inode it locked, and retries if not.
The store-wide `lock` file is never unlinked.

This module must never decide *what* is protected: callers say which file guards what.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class FileLock:
    """An exclusive (or shared) flock on `path`, created if missing."""

    def __init__(self, path: Path, *, shared: bool = False, unlink_on_release: bool = False) -> None:
        if shared and unlink_on_release:
            raise ValueError("a shared lock file cannot be unlinked by one of its holders")
        self.path = path
        self.shared = shared
        self.unlink_on_release = unlink_on_release
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with `blocking=False`, return False at once if someone else holds it."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this FileLock")
        operation = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        if not blocking:
            operation |= fcntl.LOCK_NB
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, operation)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            # The previous holder may have unlinked the file between our open and our flock:
            # then we locked an orphan inode and must start over on the current path.
            try:
                current = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
                self._fd = fd
                return True
            os.close(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self.unlink_on_release:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
