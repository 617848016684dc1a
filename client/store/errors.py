"""The local image store's typed errors.

Each message names what it is about (the digest, the reference, the tar entry), so a CLI can
print `str(error)` and nothing more. This module performs no I/O.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of everything the store raises on purpose."""


class InvalidStoreReference(StoreError, ValueError):
    """A name, image ID or digest the store cannot accept (not a full `host/repo:tag` or `host/repo@digest`)."""


class BlobNotFound(StoreError, KeyError):
    """A blob is not in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "blob not found"


class DigestMismatch(StoreError):
    """Content whose digest (or size) is not the one it was stored or unpacked by."""


class NoSuchImage(StoreError, LookupError):
    """No image in the store has this name or ID."""


class AmbiguousReference(StoreError, LookupError):
    """An image-ID prefix that matches more than one image."""


class ImageConflict(StoreError):
    """The operation needs `force` (docker: "conflict: unable to delete ... (must be forced)")."""


class InvalidImage(StoreError):
    """The manifest or config cannot be stored as a runnable image (an index, a non-image artifact,
    rootfs.diff_ids not matching the layers)."""


class UnsupportedLayer(StoreError):
    """A layer whose media type or compression the store cannot unpack."""


class BadLayer(StoreError):
    """A layer that cannot be unpacked: not a valid (compressed) tar, or entries that conflict."""


class UnsafeLayer(BadLayer):
    """A layer tar entry that would escape the unpack root (or needs privileges we do not have)."""


class SnapshotMissing(StoreError):
    """An image's layers are not unpacked yet (call `ImageStore.unpack`)."""
