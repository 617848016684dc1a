"""The distribution API's error dialect: the spec's JSON `{"errors": [{code, message, detail}]}`
with its status and headers, mapped here and nowhere else.

Domain errors (`registry.core.errors`) carry facts; this module turns them into statuses and
headers. Errors only the HTTP side raises (authentication, rate limits, unknown endpoints) are
defined here and may carry headers of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_exceptions import HttpProcessingError

from storage_backends import StorageFull

from ...core import errors
from ...core.errors import RegistryError
from ...core.uploads import UploadStatus

log = logging.getLogger("dockyard.registry")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpError(RegistryError):
    """An error of the HTTP layer itself; it may name headers to answer with."""

    status = 500

    def __init__(self, message: str | None = None, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, detail)
        self.headers = headers or {}


class Unauthorized(HttpError):
    code = "UNAUTHORIZED"
    status = 401
    message = "authentication required"


class Denied(HttpError):
    code = "DENIED"
    status = 403
    message = "requested access to the resource is denied"


class TooManyRequests(HttpError):
    code = "TOOMANYREQUESTS"
    status = 429
    message = "too many requests"


class PaginationNumberInvalid(HttpError):
    code = "PAGINATION_NUMBER_INVALID"
    status = 400
    message = "invalid number of results requested"


class InsufficientStorage(HttpError):
    status = 507
    message = "the registry's storage is full; reads still work, writes will again once space is freed"


class EndpointUnknown(HttpError):
    code = "NOT_FOUND"
    status = 404
    message = "no such endpoint in the distribution API"


class MethodNotAllowed(HttpError):
    code = "UNSUPPORTED"
    status = 405
    message = "method not allowed on this endpoint"


STATUS: dict[type[RegistryError], int] = {
    errors.BlobUnknown: 404,
    errors.BlobUploadInvalid: 400,
    errors.BlobUploadUnknown: 404,
    errors.DigestInvalid: 400,
    errors.ManifestBlobUnknown: 404,
    errors.ManifestInvalid: 400,
    errors.ManifestUnknown: 404,
    errors.ManifestTooLarge: 413,
    errors.NameInvalid: 400,
    errors.NameUnknown: 404,
    errors.TagInvalid: 400,
    errors.TooManyTags: 414,
    errors.SizeInvalid: 400,
    errors.RangeInvalid: 416,
}


def status_of(error: RegistryError) -> int:
    if isinstance(error, HttpError):
        return error.status
    return STATUS.get(type(error), 500)


def upload_location(status: UploadStatus) -> str:
    return f"/v2/{status.name}/blobs/uploads/{status.upload_id}"


def upload_headers(status: UploadStatus) -> dict[str, str]:
    """What an upload reports: `Range` with an inclusive end (`0-0` when empty, as distribution),
    its `Location` and its id."""
    return {
        "Range": f"0-{max(status.size - 1, 0)}",
        "Location": upload_location(status),
        "Docker-Upload-UUID": status.upload_id,
    }


def headers_of(error: RegistryError) -> dict[str, str]:
    if isinstance(error, HttpError):
        return dict(error.headers)
    upload = getattr(error, "upload", None)
    if upload is not None:
        return upload_headers(upload)
    if isinstance(error, errors.RangeInvalid) and error.blob_size is not None:
        return {"Content-Range": f"bytes */{error.blob_size}"}
    return {}


def error_response(request: web.Request, error: RegistryError) -> web.Response:
    """The spec's JSON error body; to a HEAD, the same headers with no body (aiohttp leaves the
    body out and keeps its Content-Length, so the client can reuse the connection)."""
    return web.json_response(error.to_json(), status=status_of(error), headers=headers_of(error))


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as error:
        return error_response(request, error)
    except StorageFull as error:
        log.error("storage full on %s %s: %s", request.method, request.path, error)
        return error_response(request, InsufficientStorage(detail={"reason": str(error)}))
    except web.HTTPMethodNotAllowed as error:
        allowed = {"Allow": error.headers.get("Allow", "")}
        return error_response(request, MethodNotAllowed(f"{request.method} is not allowed on {request.path}", headers=allowed))
    except web.HTTPNotFound:
        return error_response(request, EndpointUnknown(f"no endpoint at {request.path}"))
    except (ClientPayloadError, HttpProcessingError) as error:
        return error_response(request, errors.BlobUploadInvalid(f"request body could not be read: {error}"))
    except web.HTTPException:
        raise
    except (ConnectionResetError, ConnectionError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(request, RegistryError("internal error; see the registry log"))
