"""Manifests of repositories: validated on push, stored byte-exact, tagged, and indexed by subject.

A manifest's bytes are a blob (stored once per digest); the repository keeps a revision link
holding the media type it was pushed with, tags naming a digest, and for manifests with a
`subject` a referrer descriptor under that subject, so the referrers API never scans.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ocispec import mediatypes
from ocispec.digest import Digest, InvalidDigest
from ocispec.manifest import ManifestInvalid as ManifestParseError
from ocispec.manifest import ParsedManifest, parse_manifest
from ocispec.names import InvalidTag, validate_tag
from storage_backends import ObjectNotFound, StorageBackend

from . import layout
from .blobs import Blobs
from .errors import DigestInvalid, ManifestBlobUnknown, ManifestInvalid, ManifestUnknown, TagInvalid
from .events import Actor, Event, Listener
from .repositories import Repositories

MAX_MANIFEST_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class Reference:
    """The `<reference>` of a manifest URL: a tag or a digest."""

    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """A reference to push to: a malformed tag is refused with TAG_INVALID."""
        if ":" in text:
            try:
                return cls(digest=Digest.parse(text))
            except InvalidDigest as error:
                raise DigestInvalid(str(error), detail={"reference": text}) from None
        try:
            return cls(tag=validate_tag(text))
        except InvalidTag as error:
            raise TagInvalid(str(error), detail={"reference": text}) from None

    @classmethod
    def lookup(cls, text: str) -> Reference:
        """A reference to read or delete: a malformed tag names nothing, so it is unknown (404),
        as the conformance suite expects; a malformed digest is still DIGEST_INVALID."""
        if ":" not in text:
            try:
                validate_tag(text)
            except InvalidTag:
                raise ManifestUnknown(f"no manifest is tagged {text!r}: not a valid tag", detail={"reference": text}) from None
        return cls.parse(text)

    def __str__(self) -> str:
        return self.tag if self.tag is not None else str(self.digest)


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    media_type: str
    size: int
    body: bytes


@dataclass(frozen=True)
class PushedManifest:
    digest: Digest
    subject: Digest | None
    media_type: str
    tags: tuple[str, ...] = ()
    """Every tag the push set (the reference's, and any `tag` parameters)."""


class Manifests:
    def __init__(self, storage: StorageBackend, blobs: Blobs, repositories: Repositories) -> None:
        self.storage = storage
        self.blobs = blobs
        self.repositories = repositories
        self.listeners: list[Listener] = []
        """Told of each push and delete once it has succeeded (webhooks)."""

    def _emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    # -- push ------------------------------------------------------------------------------
    async def put(
        self,
        name: str,
        reference: Reference,
        body: bytes,
        content_type: str | None,
        *,
        tags: Sequence[str] = (),
        sparse: bool = False,
        actor: Actor = Actor(),
    ) -> PushedManifest:
        """Store a manifest (and tag it). `tags`: more tags for a push by digest (the spec's
        `?tag=` parameters), all checked before anything is stored. `sparse`: accept it with
        blobs or child manifests the repository does not have (a mirror of one platform)."""
        if tags and reference.digest is None:
            raise TagInvalid("tag parameters are for a push by digest; this push names the tag itself")
        extra: list[str] = []
        for tag in tags:
            try:
                extra.append(validate_tag(tag))
            except InvalidTag as error:
                raise TagInvalid(str(error), detail={"tag": tag}) from None
        try:
            parsed = parse_manifest(body, content_type)
        except ManifestParseError as error:
            raise ManifestInvalid(str(error)) from None
        algorithm = reference.digest.algorithm if reference.digest else "sha256"
        digest = Digest.of_bytes(body, algorithm)
        if reference.digest is not None and reference.digest != digest:
            raise DigestInvalid(
                f"manifest content has digest {digest}, not {reference.digest}",
                detail={"expected": str(reference.digest), "actual": str(digest)},
            )
        await self._require_references(name, parsed, sparse=sparse)

        blob_key = layout.blob(digest)
        if not await self.storage.exists(blob_key):
            await self.storage.put_bytes(blob_key, body)
        revision = {"mediaType": parsed.media_type, "size": len(body)}
        # Both need only the content, not each other: written at once, their syncs overlap.
        await asyncio.gather(self.storage.put_bytes(layout.manifest_revision(name, digest), json.dumps(revision).encode()), self.blobs.link(name, digest))
        subject = parsed.subject.parsed_digest if parsed.subject else None
        if subject is not None:
            await self.storage.put_bytes(layout.referrer(name, subject, digest), json.dumps(_referrer_descriptor(digest, body, parsed)).encode())
        tagged = tuple(dict.fromkeys([*([reference.tag] if reference.tag else []), *extra]))
        await self._set_tags(name, tagged, digest)
        each_tag: tuple[str | None, ...] = tagged or (None,)  # an untagged push is one event too
        for event_tag in each_tag:
            self._emit(Event("push", name, event_tag, str(digest), parsed.media_type, actor.subject, actor.registry))
        return PushedManifest(digest, subject, parsed.media_type, tagged)

    async def _set_tags(self, name: str, tags: Sequence[str], digest: Digest) -> None:
        """Point every tag at `digest`, written together once the manifest is whole; if one
        write fails, the others are put back as they were (none of this push's tags stay)."""
        if not tags:
            return
        previous: dict[str, bytes | None] = {}
        for tag in tags:
            try:
                previous[tag] = await self.storage.get_bytes(layout.tag(name, tag))
            except ObjectNotFound:
                previous[tag] = None
        results = await asyncio.gather(*(self.storage.put_bytes(layout.tag(name, tag), str(digest).encode()) for tag in tags), return_exceptions=True)
        failure = next((result for result in results if isinstance(result, BaseException)), None)
        if failure is None:
            return
        for tag, before in previous.items():
            if before is None:
                await self.storage.delete(layout.tag(name, tag))
            else:
                await self.storage.put_bytes(layout.tag(name, tag), before)
        raise failure

    async def _require_references(self, name: str, parsed: ParsedManifest, *, sparse: bool = False) -> None:
        """Every blob and child manifest it names is in the repository (unless `sparse`), with
        the size its descriptor claims (a lie would make clients and the web page trust a
        wrong length). Non-distributable layers with `urls` need not be there."""
        manifest_checks = [self._stored_manifest_size(name, digest) for digest in parsed.manifests]
        blob_sizes, manifest_sizes = await asyncio.gather(self.blobs.sizes(name, parsed.blobs), asyncio.gather(*manifest_checks))
        sizes: list[int | None] = [*blob_sizes, *manifest_sizes]
        wanted = [*parsed.blobs, *parsed.manifests]
        missing = [str(digest) for digest, size in zip(wanted, sizes) if size is None]
        for digest, size in zip(wanted, sizes):
            claimed = parsed.sizes.get(str(digest))
            if size is not None and claimed is not None and claimed != size:
                raise ManifestInvalid(
                    f"the descriptor of {digest} gives size {claimed}, but the stored content has {size} bytes",
                    detail={"digest": str(digest), "size": claimed, "stored": size},
                )
        if missing and not sparse:
            kinds = "blob" if len(parsed.blobs) else "manifest"
            raise ManifestBlobUnknown(
                f"manifest references {kinds} {missing[0]} which is not in repository {name!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                detail={"digests": missing},
            )

    async def _stored_manifest_size(self, name: str, digest: Digest) -> int | None:
        try:
            revision = json.loads(await self.storage.get_bytes(layout.manifest_revision(name, digest)))
        except ObjectNotFound:
            return None
        content = await self.blobs.content_info(digest)  # the child's bytes too, not only its record
        if content is None:
            return None
        return int(revision["size"]) if isinstance(revision.get("size"), int) else content.size

    # -- pull ------------------------------------------------------------------------------
    async def resolve(self, name: str, reference: Reference) -> Digest:
        if reference.digest is not None:
            return reference.digest
        assert reference.tag is not None
        try:
            return Digest.parse((await self.storage.get_bytes(layout.tag(name, reference.tag))).decode())
        except ObjectNotFound:
            raise ManifestUnknown(f"manifest {name}:{reference.tag} is not known to this registry", detail={"tag": reference.tag}) from None

    async def get(self, name: str, reference: Reference, *, with_body: bool = True) -> StoredManifest:
        """The manifest and how it was pushed; `with_body=False` (HEAD) skips reading the bytes."""
        digest = await self.resolve(name, reference)
        try:
            revision = json.loads(await self.storage.get_bytes(layout.manifest_revision(name, digest)))
            body = await self._body(digest) if with_body else b""
        except ObjectNotFound:
            raise ManifestUnknown(f"manifest {name}@{digest} is not known to this registry", detail={"digest": str(digest)}) from None
        return StoredManifest(digest, revision["mediaType"], revision["size"], body)

    async def _body(self, digest: Digest) -> bytes:
        try:
            return await self.storage.get_bytes(layout.blob(digest))
        except ObjectNotFound:
            if not await self.blobs.restore(digest):
                raise
            return await self.storage.get_bytes(layout.blob(digest))

    # -- delete ----------------------------------------------------------------------------
    async def delete(self, name: str, reference: Reference, *, actor: Actor = Actor()) -> None:
        """By tag: remove only the tag. By digest: remove the manifest, its tags and referrer entry."""
        await self._delete(name, reference)
        digest = str(reference.digest) if reference.digest is not None else None
        self._emit(Event("delete", name, reference.tag, digest, None, actor.subject, actor.registry))

    async def _delete(self, name: str, reference: Reference) -> None:
        if reference.tag is not None:
            if not await self.storage.delete(layout.tag(name, reference.tag)):
                raise ManifestUnknown(f"tag {name}:{reference.tag} is not known to this registry")
            return
        digest = reference.digest
        assert digest is not None
        stored = await self.get(name, reference)
        await self.storage.delete(layout.manifest_revision(name, digest))
        await self._untag_all(name, digest)
        try:
            parsed = parse_manifest(stored.body, stored.media_type)
        except ManifestParseError:
            parsed = None
        if parsed is not None and parsed.subject is not None:
            await self.storage.delete(layout.referrer(name, parsed.subject.parsed_digest, digest))
        await self.storage.delete(layout.layer_link(name, digest))

    async def _untag_all(self, name: str, digest: Digest) -> None:
        target = str(digest).encode()
        for tag in await self.storage.list(layout.tags_dir(name)):
            key = layout.tag(name, tag)
            try:
                if await self.storage.get_bytes(key) == target:
                    await self.storage.delete(key)
            except ObjectNotFound:
                continue

    # -- referrers -------------------------------------------------------------------------
    async def referrers(self, name: str, subject: Digest, artifact_type: str | None) -> list[dict[str, Any]]:
        directory = layout.referrers_dir(name, subject)
        keys = [
            f"{directory}/{algorithm}/{encoded}"
            for algorithm in await self.storage.list(directory)
            for encoded in await self.storage.list(f"{directory}/{algorithm}")
        ]
        descriptors = await asyncio.gather(*(self._read_json(key) for key in keys))
        found = [descriptor for descriptor in descriptors if descriptor is not None]
        if artifact_type is not None:
            found = [descriptor for descriptor in found if descriptor.get("artifactType") == artifact_type]
        return found

    async def _read_json(self, key: str) -> dict[str, Any] | None:
        try:
            document: dict[str, Any] = json.loads(await self.storage.get_bytes(key))
            return document
        except ObjectNotFound:
            return None


def _referrer_descriptor(digest: Digest, body: bytes, parsed: ParsedManifest) -> dict[str, Any]:
    descriptor: dict[str, Any] = {"mediaType": parsed.media_type, "digest": str(digest), "size": len(body)}
    if parsed.artifact_type:
        descriptor["artifactType"] = parsed.artifact_type
    if parsed.annotations:
        descriptor["annotations"] = parsed.annotations
    return descriptor


def acceptable(media_type: str, accept_headers: list[str]) -> bool:
    """Whether a client's Accept headers admit `media_type`.

    Clients that list no manifest media type at all (or send none) accept anything, as the
    reference registry behaves; a client naming manifest types gets one of those or a 404.
    """
    offered = {part.split(";", 1)[0].strip().lower() for header in accept_headers for part in header.split(",")}
    names_a_manifest_type = bool(offered & mediatypes.MANIFEST_TYPES)
    return not names_a_manifest_type or media_type in offered or "*/*" in offered
