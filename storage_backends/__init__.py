"""Where registry bytes live: one async contract (`base`) and its implementations."""

from .base import (
    AppendConflict,
    InvalidPath,
    InvalidRange,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StorageFull,
)

__all__ = [
    "AppendConflict",
    "InvalidPath",
    "InvalidRange",
    "ObjectInfo",
    "ObjectNotFound",
    "StorageBackend",
    "StorageError",
    "StorageFull",
]
