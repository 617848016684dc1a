"""Builds the aiohttp application over one storage backend: the distribution API at /v2 and the
admin API at /api/v1 as sub-applications, each with its own error dialect and middlewares; the
token endpoint, search, the web page and the operations endpoints on the root."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from storage_backends import StorageBackend

from ..config import Settings
from ..core import maintenance
from ..core.metadata import Database
from ..core.metadata.json_import import refuse_unimported_metadata
from ..core.services import Services
from ..storage import open_database
from . import search, token
from .admin import admin_app
from .auth import Authenticator
from .context import SERVICES
from .http import IN_FLIGHT, InFlight, UploadSlots, add_common_headers
from .observability import METRICS, Metrics, add_observability
from .v2 import blobs, listing, manifests, referrers, uploads
from .v2.errors import EndpointUnknown, error_response, errors_middleware
from .web import add_web_routes
from .web.visit import error_page, wants_html
from .webhook_sender import AiohttpSender

NAME = "{name:[^{}]+?}"


def create_app(storage: StorageBackend, settings: Settings | None = None, database: Database | None = None) -> web.Application:
    """The registry over `storage`, with the Hub in `database` (default: as the settings say,
    see `open_database`); the app migrates the database's schema when it starts."""
    settings = settings or Settings()
    registry = Services.over(storage, database or open_database(settings, storage), settings)
    in_flight = InFlight()
    observed = Metrics(in_flight)
    app = web.Application(middlewares=[in_flight.middleware, observed.middleware, _unknown_paths],
                          client_max_size=4 * 1024 * 1024 + 1024)  # fmt: skip
    app[IN_FLIGHT] = in_flight
    app[METRICS] = observed
    app[SERVICES] = registry
    app.on_cleanup.append(_close_storage)
    app.cleanup_ctx.append(_metadata)
    app.cleanup_ctx.append(_background)  # started after _metadata, stopped before it

    app.add_subapp("/v2", distribution_app(registry))
    app.add_subapp("/api/v1", admin_app())
    add_observability(app)
    app.router.add_route("GET", "/v1/search", search.search)
    if registry.signer is not None:
        app.router.add_route("GET", "/token", token.get_token)
        app.router.add_route("POST", "/token", token.post_token)
    add_web_routes(app)
    return app


def distribution_app(registry: Services) -> web.Application:
    """The OCI distribution API, mounted at /v2: the spec's JSON errors, bearer-token access
    control, per-client upload slots and the API version header on every answer."""
    middlewares = [errors_middleware]
    if registry.settings.http.max_uploads_per_client:
        middlewares.append(UploadSlots(registry.settings.http.max_uploads_per_client).middleware)
    if registry.signer is not None:
        middlewares.append(Authenticator(registry.signer, registry.hub, registry.settings.auth.realm).middleware)
    app = web.Application(middlewares=middlewares, client_max_size=4 * 1024 * 1024 + 1024)
    app.on_response_prepare.append(add_common_headers)

    route = app.router.add_route
    route("GET", "/", listing.api_version)
    route("GET", "", listing.api_version)
    route("GET", "/_catalog", listing.catalog)
    route("GET", f"/{NAME}/tags/list", listing.tags_list)
    route("POST", f"/{NAME}/blobs/uploads/", uploads.start_upload)
    route("POST", f"/{NAME}/blobs/uploads", uploads.start_upload)
    route("GET", f"/{NAME}/blobs/uploads/{{upload_id}}", uploads.upload_status)
    route("PATCH", f"/{NAME}/blobs/uploads/{{upload_id}}", uploads.upload_chunk)
    route("PUT", f"/{NAME}/blobs/uploads/{{upload_id}}", uploads.finish_upload)
    route("DELETE", f"/{NAME}/blobs/uploads/{{upload_id}}", uploads.cancel_upload)
    route("GET", f"/{NAME}/blobs/{{digest}}", blobs.get_blob)
    route("HEAD", f"/{NAME}/blobs/{{digest}}", blobs.get_blob)
    route("DELETE", f"/{NAME}/blobs/{{digest}}", blobs.delete_blob)
    route("GET", f"/{NAME}/manifests/{{reference}}", manifests.get_manifest)
    route("HEAD", f"/{NAME}/manifests/{{reference}}", manifests.get_manifest)
    route("PUT", f"/{NAME}/manifests/{{reference}}", manifests.put_manifest)
    route("DELETE", f"/{NAME}/manifests/{{reference}}", manifests.delete_manifest)
    route("GET", f"/{NAME}/referrers/{{digest}}", referrers.list_referrers)
    return app


@web.middleware
async def _unknown_paths(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A path no part of the registry serves: a styled page for a browser (by its Accept header),
    else the distribution API's NOT_FOUND, as registries answer it."""
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        if wants_html(request):  # a page that is not there
            return await error_page(request, 404)
        if request.match_info.http_exception is None:
            raise  # a handler's own 404
        return error_response(request, EndpointUnknown(f"no endpoint at {request.path}"))
    except web.HTTPMethodNotAllowed as refused:
        if wants_html(request):  # e.g. GET of a form's address
            page = await error_page(request, 405)
            page.headers["Allow"] = refused.headers.get("Allow", "")
            return page
        raise
    return response


async def _background(app: web.Application) -> AsyncIterator[None]:
    """Webhook deliveries and housekeeping run while the app does."""
    registry = app[SERVICES]
    sender = AiohttpSender(allow_private_networks=registry.settings.webhooks.allow_private_networks)
    async with contextlib.AsyncExitStack() as running:
        await running.enter_async_context(registry.webhooks.running(sender))
        await running.enter_async_context(registry.activity.running())
        await running.enter_async_context(maintenance.running(registry))
        yield


async def _metadata(app: web.Application) -> AsyncIterator[None]:
    """The database at its newest schema, no JSON-era metadata left unimported, and the
    configured admin account; the database closes with the app."""
    registry = app[SERVICES]
    try:
        await registry.database.migrate()
        await refuse_unimported_metadata(registry.storage, registry.database)
        auth = registry.settings.auth
        if auth.enabled and auth.admin_user and auth.admin_password:
            await registry.hub.users.ensure_admin(auth.admin_user, auth.admin_password)
        yield
    finally:
        try:
            await registry.database.settle()  # repositories created in the background, written before the end
        finally:
            await registry.database.close()


async def _close_storage(app: web.Application) -> None:
    await app[SERVICES].storage.close()
