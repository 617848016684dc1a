"""Content-addressed blobs of the local store: `blobs/<algorithm>/<hex>`, as in an OCI image layout.

A blob becomes visible only complete and verified: `write_blob` hashes bytes in memory and
renames an fsynced temp file into place; `Ingest` streams a download into
`ingest/<hex>.partial`, hashing as it goes, and `commit()` checks the digest (and size when
known) before the rename. A process killed mid-download leaves only the partial; the next
`Ingest` re-hashes it on entry so the digest covers the resumed prefix, and reports its length
as `offset` for an HTTP `Range` request. One process at a time writes a given blob's partial
(a per-blob flock); the others wait and then find the blob committed.

This module never interprets blob contents and never deletes a blob on its own: deciding what
is unreferenced belongs to `images.py`, under the store lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from ocispec.digest import Digest, InvalidDigest

from .errors import BlobNotFound, DigestMismatch, InvalidStoreReference, StoreError
from .files import fsync_dir, sweep_temp_files, write_all, write_temp
from .locks import FileLock

READ_CHUNK = 1024 * 1024


def parse_digest(digest: str) -> Digest:
    try:
        return Digest.parse(digest)
    except InvalidDigest as error:
        raise InvalidStoreReference(str(error)) from None


class BlobStore:
    """`root/blobs/...` plus the `ingest/` directory for partial downloads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / "blobs"
        self.ingest_dir = root / "ingest"
        self.locks_dir = root / "locks"
        for directory in (self.blobs_dir / "sha256", self.ingest_dir, self.locks_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob lives (or would live); the digest is validated, so the path is safe."""
        parsed = parse_digest(digest)
        return self.blobs_dir / parsed.algorithm / parsed.encoded

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def existing_path(self, digest: str) -> Path:
        path = self.path(digest)
        if not path.is_file():
            raise BlobNotFound(f"blob {digest} is not in the store")
        return path

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in the store") from None

    def read(self, digest: str) -> bytes:
        """The whole blob, verified against its digest (meant for manifests and configs)."""
        parsed = parse_digest(digest)
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in the store") from None
        actual = Digest.of_bytes(data, parsed.algorithm)
        if actual != parsed:
            raise DigestMismatch(f"blob {digest} is corrupt on disk: its content hashes to {actual}")
        return data

    def write(self, data: bytes, expected_digest: str | None = None) -> str:
        """Store `data` (idempotent); returns its digest. Raises DigestMismatch if not `expected_digest`."""
        algorithm = parse_digest(expected_digest).algorithm if expected_digest else "sha256"
        digest = str(Digest.of_bytes(data, algorithm))
        if expected_digest is not None and digest != expected_digest:
            raise DigestMismatch(f"content hashes to {digest}, not the expected {expected_digest}")
        path = self.path(digest)
        if path.is_file():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = write_temp(self.ingest_dir, data)
        try:
            os.replace(temp, path)  # same content whoever wins a race
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return digest

    def delete(self, digest: str) -> bool:
        """Unlink the blob (callers hold the store lock and know it is unreferenced)."""
        try:
            self.path(digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def digests(self) -> list[str]:
        found = []
        for algorithm_dir in sorted(self.blobs_dir.iterdir()):
            if algorithm_dir.is_dir():
                found.extend(f"{algorithm_dir.name}:{blob.name}" for blob in sorted(algorithm_dir.iterdir()) if blob.is_file())
        return found

    def ingest(self, digest: str, size: int | None = None) -> Ingest:
        return Ingest(self, parse_digest(digest), size)

    def sweep(self) -> None:
        """Remove temp files of writers killed mid-write (old ones only: a live writer's are young)."""
        sweep_temp_files(self.ingest_dir)


class Ingest:
    """A resumable, verified, streamed write of one blob; see the module docstring.

    Use as a context manager: entering waits for the per-blob lock, held by whichever process or
    thread is writing the same blob (so enter it from a worker thread in async code, and never
    ingest one digest twice at once from a single thread: it would wait for itself), re-hashes any partial and sets `offset`; leaving without `commit()`
    keeps the partial for the next attempt. When the blob is already in the store on entry,
    `exists` is True, `offset` is its size, `write` refuses bytes and `commit` does nothing.
    """

    def __init__(self, blobs: BlobStore, digest: Digest, size: int | None = None) -> None:
        self.digest = str(digest)
        self.size = size
        self.exists = False
        self._blobs = blobs
        self._parsed = digest
        name = digest.encoded if digest.algorithm == "sha256" else f"{digest.algorithm}-{digest.encoded}"
        self.partial_path = blobs.ingest_dir / f"{name}.partial"
        self._lock = FileLock(blobs.locks_dir / f"ingest-{name}.lock", unlink_on_release=True)
        self._hasher = digest.hasher()
        self._offset = 0
        self._fd: int | None = None
        self._open = False

    @property
    def offset(self) -> int:
        """Bytes already held (the partial's length, or the blob's size when it exists)."""
        self._require_open()
        return self._offset

    def open(self) -> Ingest:
        if self._open:
            return self
        self._lock.acquire()
        try:
            self._open = True
            target = self._blobs.path(self.digest)
            if target.is_file():
                self.exists = True
                self._offset = target.stat().st_size
                self.partial_path.unlink(missing_ok=True)  # a stale attempt, no longer needed
                return self
            self._fd = os.open(self.partial_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            self._rehash()
        except BaseException:
            self.close()
            raise
        return self

    def _rehash(self) -> None:
        """Hash what a previous (perhaps killed) attempt left, so the digest covers the prefix."""
        assert self._fd is not None
        os.lseek(self._fd, 0, os.SEEK_SET)
        length = 0
        while chunk := os.read(self._fd, READ_CHUNK):
            self._hasher.update(chunk)
            length += len(chunk)
        if self.size is not None and length > self.size:
            # Longer than the blob can be: useless, start over.
            os.ftruncate(self._fd, 0)
            self._hasher = self._parsed.hasher()
            length = 0
        os.lseek(self._fd, length, os.SEEK_SET)
        self._offset = length

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append `chunk` to the partial and to the running hash."""
        self._require_open()
        if not chunk:
            return
        if self.exists:
            raise StoreError(f"blob {self.digest} is already in the store; nothing to write")
        if self.size is not None and self._offset + len(chunk) > self.size:
            raise DigestMismatch(
                f"blob {self.digest}: {self._offset + len(chunk)} bytes written, more than its size {self.size}"
            )
        assert self._fd is not None
        write_all(self._fd, chunk)
        self._hasher.update(chunk)
        self._offset += len(chunk)

    def commit(self) -> None:
        """Verify and publish the blob; on a mismatch delete the partial and raise DigestMismatch."""
        self._require_open()
        if self.exists:
            return
        assert self._fd is not None
        actual = f"{self._parsed.algorithm}:{self._hasher.hexdigest()}"
        problem = None
        if self.size is not None and self._offset != self.size:
            problem = f"{self._offset} bytes received, the descriptor says {self.size}"
        elif actual != self.digest:
            problem = f"the content hashes to {actual}"
        if problem is not None:
            self.discard()
            raise DigestMismatch(f"blob {self.digest} failed verification: {problem}; the partial download was deleted")
        os.fsync(self._fd)
        target = self._blobs.path(self.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.partial_path, target)
        fsync_dir(target.parent)
        self.exists = True
        self.close()

    def discard(self) -> None:
        """Delete the partial (e.g. the registry served something else) and close."""
        if self._open and not self.exists:
            self.partial_path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        """Release the lock; an uncommitted partial stays for the next attempt."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock.held:
            self._lock.release()
        self._open = False

    def _require_open(self) -> None:
        if not self._open:
            raise StoreError(f"ingest of {self.digest} is not open: use it as a context manager (or call open())")

    def __enter__(self) -> Ingest:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
