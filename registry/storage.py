"""The storage backend and the metadata database the settings name: the one factory both the
server and the offline commands open them with."""

from __future__ import annotations

from storage_backends import StorageBackend
from storage_backends.filesystem import FilesystemBackend

from .config import ConfigError, Settings
from .core.metadata import Database

METADATA_FILE = "hub.sqlite3"
"""The embedded default database, in the filesystem storage root."""


def open_storage(settings: Settings) -> StorageBackend:
    storage = settings.storage
    if storage.backend == "filesystem":
        try:
            return FilesystemBackend(storage.root)
        except OSError as error:
            raise ConfigError(f"cannot use storage.root {storage.root}: {error.strerror}") from None
    from storage_backends.s3 import S3Backend  # boto3 is loaded only for S3

    return S3Backend(
        bucket=storage.s3.bucket,
        prefix=storage.s3.prefix,
        region=storage.s3.region,
        endpoint_url=storage.s3.endpoint_url,
        redirect=storage.s3.redirect,
    )


def open_database(settings: Settings, storage: StorageBackend) -> Database:
    """`metadata.url`; else an SQLite file in the filesystem storage root; else (S3 served
    in-process without a URL, as tests do) an in-memory SQLite database."""
    if settings.metadata.url:
        return Database(settings.metadata.url)
    if isinstance(storage, FilesystemBackend):
        return Database(f"sqlite:///{storage.root.resolve() / METADATA_FILE}")
    return Database("sqlite://")
