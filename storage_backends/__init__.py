"""Where registry bytes live: one async contract (`base`) and its implementations."""

from .base import (
    InvalidPath,
    InvalidRange,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StorageFull,
)

__all__ = [
    "InvalidPath",
    "InvalidRange",
    "ObjectInfo",
    "ObjectNotFound",
    "StorageBackend",
    "StorageError",
    "StorageFull",
]
