"""The registry's domain services, built once per app over one storage backend."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from storage_backends import StorageBackend

from .blobs import Blobs
from .config import RegistryOptions
from .manifests import Manifests
from .repositories import Repositories
from .uploads import Uploads


@dataclass
class Services:
    storage: StorageBackend
    options: RegistryOptions
    repositories: Repositories
    blobs: Blobs
    uploads: Uploads
    manifests: Manifests

    @classmethod
    def over(cls, storage: StorageBackend, options: RegistryOptions | None = None) -> Services:
        repositories = Repositories(storage)
        blobs = Blobs(storage, repositories)
        return cls(
            storage=storage,
            options=options or RegistryOptions(),
            repositories=repositories,
            blobs=blobs,
            uploads=Uploads(storage, blobs),
            manifests=Manifests(storage, blobs, repositories),
        )


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
