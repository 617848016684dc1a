"""Builds the aiohttp application: routes of the distribution API over one storage backend."""

from __future__ import annotations

from aiohttp import web

from storage_backends import StorageBackend

from .auth import Authenticator
from . import maintenance
from .config import Settings
from .http import IN_FLIGHT, InFlight, UploadSlots, add_common_headers, errors_middleware
from .routes import blobs, listing, manifests, referrers, search, token, uploads
from .routes.admin import add_admin_routes, admin_errors
from .observability import METRICS, Metrics, add_observability
from .services import SERVICES, Services
from .web import add_web_routes

NAME = "{name:[^{}]+?}"


def create_app(storage: StorageBackend, settings: Settings | None = None) -> web.Application:
    settings = settings or Settings()
    registry = Services.over(storage, settings)
    in_flight = InFlight()
    observed = Metrics(in_flight)
    middlewares = [in_flight.middleware, observed.middleware, errors_middleware, admin_errors]
    if settings.http.max_uploads_per_client:
        middlewares.append(UploadSlots(settings.http.max_uploads_per_client).middleware)
    if registry.signer is not None:
        middlewares.append(Authenticator(registry.signer, registry.accounts, settings.auth.realm).middleware)
    app = web.Application(middlewares=middlewares, client_max_size=4 * 1024 * 1024 + 1024)
    app[IN_FLIGHT] = in_flight
    app[METRICS] = observed
    app[SERVICES] = registry
    app.on_response_prepare.append(add_common_headers)
    app.on_startup.append(_ensure_admin)
    app.on_cleanup.append(_close_storage)
    app.cleanup_ctx.append(registry.webhooks.run)  # cleaned up before _close_storage
    app.cleanup_ctx.append(maintenance.run)

    route = app.router.add_route
    add_observability(app)
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
    route("GET", "/v1/search", search.search)
    add_admin_routes(app)
    add_web_routes(app)
    if registry.signer is not None:
        route("GET", "/token", token.get_token)
        route("POST", "/token", token.post_token)
    return app


async def _ensure_admin(app: web.Application) -> None:
    registry = app[SERVICES]
    auth = registry.settings.auth
    if auth.enabled and auth.admin_user and auth.admin_password:
        await registry.accounts.ensure_admin(auth.admin_user, auth.admin_password)


async def _close_storage(app: web.Application) -> None:
    await app[SERVICES].storage.close()
