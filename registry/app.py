"""Builds the aiohttp application: routes of the distribution API over one storage backend."""

from __future__ import annotations

from aiohttp import web

from storage_backends import StorageBackend

from .config import RegistryOptions
from .http import IN_FLIGHT, InFlight, add_common_headers, errors_middleware
from .routes import blobs, listing, manifests, referrers, uploads
from .services import SERVICES, Services

NAME = "{name:[^{}]+?}"


def create_app(storage: StorageBackend, options: RegistryOptions | None = None) -> web.Application:
    in_flight = InFlight()
    app = web.Application(middlewares=[in_flight.middleware, errors_middleware], client_max_size=4 * 1024 * 1024 + 1024)
    app[IN_FLIGHT] = in_flight
    app[SERVICES] = Services.over(storage, options)
    app.on_response_prepare.append(add_common_headers)
    app.on_cleanup.append(_close_storage)

    route = app.router.add_route
    route("GET", "/v2/", listing.api_version)
    route("GET", "/v2", listing.api_version)
    route("GET", "/v2/_catalog", listing.catalog)
    route("GET", f"/v2/{NAME}/tags/list", listing.tags_list)
    route("POST", f"/v2/{NAME}/blobs/uploads/", uploads.start_upload)
    route("POST", f"/v2/{NAME}/blobs/uploads", uploads.start_upload)
    route("GET", f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.upload_status)
    route("PATCH", f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.upload_chunk)
    route("PUT", f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.finish_upload)
    route("DELETE", f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.cancel_upload)
    route("GET", f"/v2/{NAME}/blobs/{{digest}}", blobs.get_blob)
    route("HEAD", f"/v2/{NAME}/blobs/{{digest}}", blobs.get_blob)
    route("DELETE", f"/v2/{NAME}/blobs/{{digest}}", blobs.delete_blob)
    route("GET", f"/v2/{NAME}/manifests/{{reference}}", manifests.get_manifest)
    route("HEAD", f"/v2/{NAME}/manifests/{{reference}}", manifests.get_manifest)
    route("PUT", f"/v2/{NAME}/manifests/{{reference}}", manifests.put_manifest)
    route("DELETE", f"/v2/{NAME}/manifests/{{reference}}", manifests.delete_manifest)
    route("GET", f"/v2/{NAME}/referrers/{{digest}}", referrers.list_referrers)
    return app


async def _close_storage(app: web.Application) -> None:
    await app[SERVICES].storage.close()
