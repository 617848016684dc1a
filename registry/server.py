"""Starts a registry process from settings: storage, app, listening socket, graceful stop."""

from __future__ import annotations

import logging

from aiohttp import web

from storage_backends import StorageBackend
from storage_backends.filesystem import FilesystemBackend

from .app import create_app
from .config import ConfigError, Settings

log = logging.getLogger("dockyard.registry")


def open_storage(settings: Settings) -> StorageBackend:
    storage = settings.storage
    if storage.backend == "filesystem":
        try:
            return FilesystemBackend(storage.root)
        except OSError as error:
            raise ConfigError(f"cannot use storage.root {storage.root}: {error.strerror}") from None
    from storage_backends.s3 import S3Backend

    return S3Backend(
        bucket=storage.s3.bucket,
        prefix=storage.s3.prefix,
        region=storage.s3.region,
        endpoint_url=storage.s3.endpoint_url,
        redirect=storage.s3.redirect,
    )


def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM; in-flight requests get `http.shutdown_timeout` to finish."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app = create_app(open_storage(settings))
    log.info(
        "dockyard registry on %s, storage %s", settings.http.listen, settings.storage.backend
    )
    web.run_app(
        app,
        host=settings.http.host,
        port=settings.http.port,
        shutdown_timeout=settings.http.shutdown_timeout,
        access_log=logging.getLogger("dockyard.access"),
        print=None,
    )
