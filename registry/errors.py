"""Typed registry errors, each mapped once to the distribution-spec's code and HTTP status.

Domain code raises these; `registry.http` turns them into the spec's JSON error body
`{"errors": [{"code", "message", "detail"}]}`.
"""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    code = "UNKNOWN"
    status = 500
    message = "unknown error"

    def __init__(self, message: str | None = None, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.detail = detail
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


class BlobUnknown(RegistryError):
    code = "BLOB_UNKNOWN"
    status = 404
    message = "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code = "BLOB_UPLOAD_INVALID"
    status = 400
    message = "blob upload invalid"


class BlobUploadUnknown(RegistryError):
    code = "BLOB_UPLOAD_UNKNOWN"
    status = 404
    message = "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code = "DIGEST_INVALID"
    status = 400
    message = "provided digest did not match uploaded content"


class ManifestBlobUnknown(RegistryError):
    code = "MANIFEST_BLOB_UNKNOWN"
    status = 404
    message = "manifest references a manifest or blob unknown to registry"


class ManifestInvalid(RegistryError):
    code = "MANIFEST_INVALID"
    status = 400
    message = "manifest invalid"


class ManifestUnknown(RegistryError):
    code = "MANIFEST_UNKNOWN"
    status = 404
    message = "manifest unknown to registry"


class NameInvalid(RegistryError):
    code = "NAME_INVALID"
    status = 400
    message = "invalid repository name"


class NameUnknown(RegistryError):
    code = "NAME_UNKNOWN"
    status = 404
    message = "repository name not known to registry"


class SizeInvalid(RegistryError):
    code = "SIZE_INVALID"
    status = 400
    message = "provided length did not match content length"


class Unauthorized(RegistryError):
    code = "UNAUTHORIZED"
    status = 401
    message = "authentication required"


class Denied(RegistryError):
    code = "DENIED"
    status = 403
    message = "requested access to the resource is denied"


class TooManyRequests(RegistryError):
    code = "TOOMANYREQUESTS"
    status = 429
    message = "too many requests"


class TagInvalid(RegistryError):
    code = "TAG_INVALID"
    status = 400
    message = "manifest tag did not match URI"


class PaginationNumberInvalid(RegistryError):
    code = "PAGINATION_NUMBER_INVALID"
    status = 400
    message = "invalid number of results requested"


class RangeInvalid(RegistryError):
    code = "RANGE_INVALID"
    status = 416
    message = "requested range not satisfiable"


class ManifestTooLarge(RegistryError):
    code = "SIZE_INVALID"
    status = 413
    message = "manifest is larger than the registry accepts"


class UriTooLong(RegistryError):
    code = "TAG_INVALID"
    status = 414
    message = "too many tags in one request"


class InsufficientStorage(RegistryError):
    status = 507
    message = "the registry's storage is full; reads still work, writes will again once space is freed"


class EndpointUnknown(RegistryError):
    code = "NOT_FOUND"
    status = 404
    message = "no such endpoint in the distribution API"


class MethodNotAllowed(RegistryError):
    code = "UNSUPPORTED"
    status = 405
    message = "method not allowed on this endpoint"
