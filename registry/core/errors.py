"""The distribution spec's error vocabulary, as the domain raises it.

Each error names the spec's code (`BLOB_UNKNOWN`, ...), a message and an optional detail. What
status and headers an error is answered with is the HTTP side's business (`registry.api.v2.errors`);
where a header needs domain facts (the size of an upload so far, the length of a blob), the error
carries those facts, not the header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .uploads import UploadStatus


class RegistryError(Exception):
    code = "UNKNOWN"
    message = "unknown error"

    def __init__(self, message: str | None = None, detail: Any = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


class BlobUnknown(RegistryError):
    code = "BLOB_UNKNOWN"
    message = "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code = "BLOB_UPLOAD_INVALID"
    message = "blob upload invalid"


class BlobUploadUnknown(RegistryError):
    code = "BLOB_UPLOAD_UNKNOWN"
    message = "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code = "DIGEST_INVALID"
    message = "provided digest did not match uploaded content"


class ManifestBlobUnknown(RegistryError):
    code = "MANIFEST_BLOB_UNKNOWN"
    message = "manifest references a manifest or blob unknown to registry"


class ManifestInvalid(RegistryError):
    code = "MANIFEST_INVALID"
    message = "manifest invalid"


class ManifestUnknown(RegistryError):
    code = "MANIFEST_UNKNOWN"
    message = "manifest unknown to registry"


class ManifestTooLarge(RegistryError):
    code = "SIZE_INVALID"
    message = "manifest is larger than the registry accepts"


class NameInvalid(RegistryError):
    code = "NAME_INVALID"
    message = "invalid repository name"


class NameUnknown(RegistryError):
    code = "NAME_UNKNOWN"
    message = "repository name not known to registry"


class TagInvalid(RegistryError):
    code = "TAG_INVALID"
    message = "manifest tag did not match URI"


class TooManyTags(RegistryError):
    code = "TAG_INVALID"
    message = "too many tags in one request"


class SizeInvalid(RegistryError):
    code = "SIZE_INVALID"
    message = "provided length did not match content length"

    def __init__(self, message: str | None = None, detail: Any = None, *, upload: UploadStatus | None = None) -> None:
        super().__init__(message, detail)
        self.upload = upload
        """The upload session the chunk was for, as it stands after refusing it."""


class RangeInvalid(RegistryError):
    code = "RANGE_INVALID"
    message = "requested range not satisfiable"

    def __init__(
        self,
        message: str | None = None,
        detail: Any = None,
        *,
        upload: UploadStatus | None = None,
        blob_size: int | None = None,
    ) -> None:
        super().__init__(message, detail)
        self.upload = upload
        """An upload chunk out of order: the session as it stands."""
        self.blob_size = blob_size
        """A read past a blob's end: the blob's length."""
