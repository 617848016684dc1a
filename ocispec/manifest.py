"""Parsing and validating image manifests and indexes, with no I/O.

`parse_manifest` turns the bytes a client PUTs into a `ParsedManifest`: the media type the
registry serves it with and every digest it references, so the registry can check that those
exist before accepting it. The bytes themselves are never re-serialised: registries store and
serve manifests byte-exact, because their digest is the digest of those bytes.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import mediatypes
from .digest import Digest, InvalidDigest

GENERIC_CONTENT_TYPES = frozenset({"", "application/json", "application/octet-stream", "*/*"})


class ManifestInvalid(ValueError):
    """The manifest cannot be accepted; the message says why."""


class Descriptor(BaseModel):
    """An OCI content descriptor (image-spec descriptor.md)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    media_type: str = Field(alias="mediaType", min_length=1)
    digest: str
    size: int = Field(ge=0)
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    artifact_type: str | None = Field(default=None, alias="artifactType")
    platform: dict[str, Any] | None = None

    @field_validator("digest")
    @classmethod
    def _digest_is_valid(cls, value: str) -> str:
        try:
            Digest.parse(value)
        except InvalidDigest as error:
            raise ValueError(str(error)) from None
        return value

    @property
    def parsed_digest(self) -> Digest:
        return Digest.parse(self.digest)


class ImageManifest(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    artifact_type: str | None = Field(default=None, alias="artifactType")
    config: Descriptor
    layers: list[Descriptor]
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


class ImageIndex(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    artifact_type: str | None = Field(default=None, alias="artifactType")
    manifests: list[Descriptor]
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


class ParsedManifest(BaseModel):
    """What the registry needs to know about a manifest it is about to store."""

    media_type: str
    blobs: list[Digest]
    """Config and layer digests (image manifests); must be blobs of the repository."""
    manifests: list[Digest]
    """Child manifest digests (indexes); must be manifests of the repository."""
    subject: Descriptor | None
    artifact_type: str | None
    """artifactType, or for an image manifest without one, its config's media type."""
    annotations: dict[str, str] | None
    sizes: dict[str, int] = {}
    """The size each descriptor claims, by digest, to be checked against what is stored."""
    foreign: list[Digest] = []
    """Non-distributable layers with `urls`: clients fetch them elsewhere; kept if pushed anyway."""

    model_config = ConfigDict(arbitrary_types_allowed=True)


def _base_media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "manifest"
    return f"{location}: {first['msg']}"


def inferred_media_type(document: dict[str, Any]) -> str | None:
    """The media type a manifest without `mediaType` (and without a telling Content-Type) has by
    its shape: an OCI index when it lists `manifests`, an OCI image manifest when it has a
    `config` or `layers`; None when it has neither."""
    if "manifests" in document:
        return mediatypes.OCI_INDEX
    if "config" in document or "layers" in document:
        return mediatypes.OCI_MANIFEST
    return None


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """Validate `body` as a manifest sent with `content_type` and list what it references."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise ManifestInvalid("manifest is not acceptable JSON: nested too deeply") from None
    except ValueError as error:  # not JSON, not UTF-8, or an integer of thousands of digits
        raise ManifestInvalid(f"manifest is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ManifestInvalid("manifest must be a JSON object")

    header_type = _base_media_type(content_type)
    body_type = document.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise ManifestInvalid("mediaType must be a string")
    if document.get("schemaVersion") == 1 or header_type in mediatypes.SCHEMA1_TYPES:
        raise ManifestInvalid(
            "Docker schema 1 manifests are deprecated and not accepted; push schema 2 or OCI"
        )
    if header_type not in GENERIC_CONTENT_TYPES:
        if body_type and body_type != header_type:
            raise ManifestInvalid(
                f"Content-Type {header_type!r} does not match the manifest's mediaType {body_type!r}"
            )
        media_type = header_type
    else:
        media_type = body_type or inferred_media_type(document) or ""
        if not media_type:
            raise ManifestInvalid("cannot tell the manifest type: no mediaType, Content-Type, config or manifests")

    if media_type not in mediatypes.MANIFEST_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type {media_type!r}")
    if document.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")

    try:
        if media_type in mediatypes.INDEXES:
            index = ImageIndex.model_validate(document)
            return ParsedManifest(
                media_type=media_type,
                blobs=[],
                manifests=[entry.parsed_digest for entry in index.manifests],
                subject=index.subject,
                artifact_type=index.artifact_type,
                annotations=index.annotations,
                sizes={entry.digest: entry.size for entry in index.manifests},
            )
        manifest = ImageManifest.model_validate(document)
    except ValidationError as error:
        raise ManifestInvalid(_describe(error)) from None
    foreign = [layer for layer in manifest.layers if layer.media_type in mediatypes.NONDISTRIBUTABLE_LAYERS and layer.urls]
    return ParsedManifest(
        media_type=media_type,
        blobs=[manifest.config.parsed_digest] + [layer.parsed_digest for layer in manifest.layers if layer not in foreign],
        manifests=[],
        subject=manifest.subject,
        artifact_type=manifest.artifact_type or manifest.config.media_type,
        annotations=manifest.annotations,
        sizes={entry.digest: entry.size for entry in [manifest.config, *manifest.layers] if entry not in foreign},
        foreign=[layer.parsed_digest for layer in foreign],
    )
