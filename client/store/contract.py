"""What the transfer code (pull, push, blob downloads) needs of a local image store, as a
protocol: `ImageStore` provides it, and the transfer modules depend on nothing more."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .images import ImageRecord


class BlobIngestion(Protocol):
    """One resumable, verified write of a blob (see `client.store.blobs.Ingest`)."""

    @property
    def offset(self) -> int:
        """Bytes already received (a partial left by an earlier attempt counts)."""
        ...

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> None:
        """Verify the digest and make the blob visible; raises DigestMismatch otherwise."""
        ...


class BlobIngest(Protocol):
    def ingest(self, digest: str, size: int | None = None) -> AbstractContextManager[BlobIngestion]: ...


class LocalImages(BlobIngest, Protocol):
    root: Path

    def has_blob(self, digest: str) -> bool: ...

    def blob_path(self, digest: str) -> Path: ...

    def read_blob(self, digest: str) -> bytes: ...

    def write_blob(self, data: bytes, expected_digest: str | None = None) -> str: ...

    def add_image(
        self, reference: str | None, manifest_digest: str, *, index_digest: str | None = None, parent: str | None = None
    ) -> ImageRecord: ...

    def resolve(self, reference: str) -> ImageRecord: ...
