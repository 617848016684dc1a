"""The storage backend the settings name: the one factory both the server and the offline
commands open storage with."""

from __future__ import annotations

from storage_backends import StorageBackend
from storage_backends.filesystem import FilesystemBackend

from .config import ConfigError, Settings


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
