"""The local layered image store: content-addressed blobs in an OCI image layout, names, and
layers unpacked once per chain ID in overlayfs form. See `store.py` for the on-disk layout."""

from .blobs import Ingest
from .errors import (
    AmbiguousReference,
    BadLayer,
    BlobNotFound,
    DigestMismatch,
    ImageConflict,
    InvalidImage,
    InvalidStoreReference,
    NoSuchImage,
    SnapshotMissing,
    StoreError,
    UnsafeLayer,
    UnsupportedLayer,
)
from .images import ImageRecord, RemovalReport, normalize_name
from .store import ImageStore, default_root
from .unpack import chain_ids

__all__ = [
    "AmbiguousReference",
    "BadLayer",
    "BlobNotFound",
    "DigestMismatch",
    "ImageConflict",
    "ImageRecord",
    "ImageStore",
    "Ingest",
    "InvalidImage",
    "InvalidStoreReference",
    "NoSuchImage",
    "RemovalReport",
    "SnapshotMissing",
    "StoreError",
    "UnsafeLayer",
    "UnsupportedLayer",
    "chain_ids",
    "default_root",
    "normalize_name",
]
