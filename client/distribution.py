"""`RegistryClient`: the distribution API endpoints one registry offers, as async methods.

Manifests (with Accept negotiation over OCI and Docker manifest and index types, digests
verified), blob existence, cross-repository mounts, blob transfer (delegated to `transfer`),
tags, the catalog and search (`/v1/search`, falling back to filtering `/v2/_catalog`).
`connect()` builds one from a registry name, the user's settings and saved credentials.

What to pull or push, and in which order, is `pull`'s and `push`'s business, not this module's.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from ocispec import mediatypes
from ocispec.digest import Digest
from ocispec.manifest import inferred_media_type
from ocispec.reference import DOCKER_HUB, DOCKER_HUB_INDEX, looks_like_host, normalize_registry

from . import blob_transfer
from .auth import Credentials
from .credentials import load_credentials
from .errors import DigestMismatch, NotFound, Subject, UnsupportedManifest
from .progress import Progress
from .registry_http import ClientSettings, RegistryTransport, new_session

if TYPE_CHECKING:
    from .store.contract import BlobIngest

MANIFEST_ACCEPT = ", ".join(
    [mediatypes.OCI_INDEX, mediatypes.DOCKER_MANIFEST_LIST, mediatypes.OCI_MANIFEST, mediatypes.DOCKER_MANIFEST]
)
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as the registry served it."""

    data: bytes
    media_type: str
    digest: str

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.data)

    @property
    def is_index(self) -> bool:
        return self.media_type in mediatypes.INDEXES


@dataclass(frozen=True)
class SearchResult:
    name: str
    description: str = ""
    star_count: int = 0
    is_official: bool = False
    is_automated: bool = False


@dataclass(frozen=True)
class SearchResults:
    registry: str
    query: str
    results: list[SearchResult] = field(default_factory=list)
    from_catalog: bool = False
    """True when the registry has no /v1/search and the catalog was filtered instead."""


def manifest_media_type(data: bytes, content_type: str | None) -> str:
    """The manifest's media type: its own `mediaType`, else a specific Content-Type, else inferred."""
    try:
        document = json.loads(data)
    except ValueError:
        raise UnsupportedManifest("the registry sent a manifest that is not JSON") from None
    if not isinstance(document, dict):
        raise UnsupportedManifest("the registry sent a manifest that is not a JSON object")
    declared = document.get("mediaType")
    header = (content_type or "").split(";", 1)[0].strip()
    media_type = declared or (header if header in mediatypes.MANIFEST_TYPES else None)
    if media_type is None:
        media_type = inferred_media_type(document) or mediatypes.OCI_MANIFEST
    if document.get("schemaVersion") == 1 or media_type in mediatypes.SCHEMA1_TYPES:
        raise UnsupportedManifest("Docker schema 1 manifests are not supported; push the image again as schema 2 or OCI")
    if media_type not in mediatypes.MANIFEST_TYPES:
        raise UnsupportedManifest(f"unsupported manifest media type {media_type!r}")
    return media_type


def repository_scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


class RegistryClient:
    def __init__(self, transport: RegistryTransport) -> None:
        self.transport = transport

    @property
    def registry(self) -> str:
        return self.transport.registry

    def subject(self, repository: str | None, action: str, missing: str | None = None) -> Subject:
        return Subject(action, f"{self.registry}/{repository}" if repository else self.registry, missing)

    async def ping(self, action: str = "pull") -> None:
        """GET /v2/: learns the registry's auth challenge before the first real request."""
        await self.transport.fetch("GET", "/v2/", self.subject(None, action), ok=(200, 401), authenticate=False)

    async def sign_in(self) -> None:
        """GET /v2/ with the transport's credentials, through the challenge flow;
        AuthenticationRequired when the registry refuses them."""
        await self.transport.fetch("GET", "/v2/", Subject("login", self.registry))

    # -- manifests -------------------------------------------------------------------------------

    async def get_manifest(self, repository: str, reference: str, *, action: str = "pull") -> Manifest:
        """The manifest or index `repository:reference` (tag or digest), its digest checked."""
        name = f"{self.registry}/{repository}"
        missing = f"manifest for {name}{'@' if ':' in reference else ':'}{reference}"
        reply = await self.transport.fetch(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            self.subject(repository, action, missing),
            scopes=(repository_scope(repository, "pull"),),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if len(reply.body) > MAX_MANIFEST_SIZE:
            raise UnsupportedManifest(f"{missing} is larger than {MAX_MANIFEST_SIZE} bytes")
        digest = _verified_digest(reply.body, reference, reply.headers.get("Docker-Content-Digest"), missing)
        return Manifest(reply.body, manifest_media_type(reply.body, reply.headers.get("Content-Type")), digest)

    async def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str, algorithm: str = "sha256") -> str:
        """PUT a manifest under a tag or its digest; returns its digest (checked against the registry's).

        A tag push names no digest, so registries file it under the canonical sha256; a manifest
        known by another algorithm (sha512) is pushed by that digest with the tag as a `tag`
        parameter (distribution-spec, "Pushing Manifests"), and by tag only when the registry
        does not confirm the tag with `OCI-Tag`."""
        digest = str(Digest.of_bytes(data, algorithm))
        tag = None if ":" in reference else reference
        if algorithm != "sha256" and tag is not None:
            reply = await self._put_manifest(repository, f"{digest}?tag={tag}", data, media_type)
            confirmed = {t.strip() for value in reply.headers.getall("OCI-Tag", []) for t in value.split(",")}
            if tag not in confirmed:
                await self._put_manifest(repository, tag, data, media_type)
        else:
            reply = await self._put_manifest(repository, reference, data, media_type)
        answered = reply.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise DigestMismatch(f"the registry stored the manifest as {answered}, but its bytes hash to {digest}")
        return digest

    async def _put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> Any:
        return await self.transport.fetch(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            self.subject(repository, "push", f"repository {self.registry}/{repository}"),
            scopes=(repository_scope(repository, "pull", "push"),),
            ok=(201,),
            headers={"Content-Type": media_type},
            data=data,
        )

    # -- blobs -----------------------------------------------------------------------------------

    async def blob_size(self, repository: str, digest: str, *, action: str = "push") -> int | None:
        """HEAD the blob: its size when `repository` has it, None when not."""
        subject = self.subject(repository, action, f"blob {digest} in {self.registry}/{repository}")
        actions = ("pull", "push") if action == "push" else ("pull",)
        try:
            reply = await self.transport.fetch(
                "HEAD", f"/v2/{repository}/blobs/{digest}", subject, scopes=(repository_scope(repository, *actions),)
            )
        except NotFound:
            return None
        length = reply.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else 0

    async def download_blob(
        self, repository: str, digest: str, size: int, store: BlobIngest, progress: Progress | None = None
    ) -> None:
        """Into the store's ingest area, resuming with Range; verified before it becomes a blob."""
        subject = self.subject(repository, "pull", f"blob {digest} in {self.registry}/{repository}")
        scopes = (repository_scope(repository, "pull"),)
        await blob_transfer.download_blob(self.transport, f"/v2/{repository}/blobs/{digest}", scopes, digest, size, store, subject, progress)

    async def mount_blob(self, repository: str, digest: str, source: str) -> str | None:
        """Cross-repository mount from `source`; None when mounted, else the upload Location to use."""
        subject = self.subject(repository, "push")
        reply = await self.transport.fetch(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            subject,
            scopes=(repository_scope(repository, "pull", "push"), repository_scope(source, "pull")),
            ok=(201, 202),
            params={"mount": digest, "from": source},
        )
        if reply.status == 201:
            return None
        return reply.headers.get("Location") or await self.start_upload(repository)

    async def start_upload(self, repository: str) -> str:
        """A new upload session; its Location."""
        subject = self.subject(repository, "push")
        scopes = (repository_scope(repository, "pull", "push"),)
        reply = await self.transport.fetch("POST", f"/v2/{repository}/blobs/uploads/", subject, scopes=scopes, ok=(202,))
        return blob_transfer.upload_location(reply.headers, subject)

    async def upload_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        path: Path,
        *,
        location: str | None = None,
        progress: Progress | None = None,
        chunk_threshold: int = blob_transfer.DEFAULT_CHUNK_THRESHOLD,
        chunk_size: int = blob_transfer.DEFAULT_CHUNK_SIZE,
    ) -> None:
        """Upload a blob, into `location` (a session already started, e.g. by a refused mount) or a new one."""
        await blob_transfer.upload_blob(
            self.transport,
            location or await self.start_upload(repository),
            (repository_scope(repository, "pull", "push"),),
            digest,
            size,
            path,
            self.subject(repository, "push"),
            progress=progress,
            chunk_threshold=chunk_threshold,
            chunk_size=chunk_size,
        )

    # -- listings --------------------------------------------------------------------------------

    async def list_tags(self, repository: str) -> list[str]:
        return await self._paged(
            f"/v2/{repository}/tags/list", "tags", self.subject(repository, "list"), (repository_scope(repository, "pull"),)
        )

    async def catalog(self) -> list[str]:
        return await self._paged("/v2/_catalog", "repositories", self.subject(None, "catalog"), ("registry:catalog:*",))

    async def _paged(self, path: str, key: str, subject: Subject, scopes: tuple[str, ...]) -> list[str]:
        items: list[str] = []
        next_path: str | None = path
        while next_path:
            reply = await self.transport.fetch("GET", next_path, subject, scopes=scopes)
            items += json.loads(reply.body).get(key) or []
            match = _NEXT_LINK.search(reply.headers.get("Link", ""))
            next_path = match.group(1) if match else None
        return items

    async def search(self, query: str, limit: int = 25) -> SearchResults:
        """`GET /v1/search?q=&n=`; a registry without it (404) has its catalog filtered instead."""
        subject = self.subject(None, "search")
        hub = self.registry == DOCKER_HUB  # Docker Hub searches on its index host, anonymously
        path = f"https://{DOCKER_HUB_INDEX}/v1/search" if hub else "/v1/search"
        try:
            reply = await self.transport.fetch(
                "GET", path, subject, params={"q": query, "n": str(limit)}, authenticate=not hub
            )
        except NotFound:
            return await self._search_catalog(query, limit)
        document = json.loads(reply.body)
        results = [
            SearchResult(
                name=str(entry.get("name", "")),
                description=str(entry.get("description") or ""),
                star_count=int(entry.get("star_count") or 0),
                is_official=bool(entry.get("is_official")),
                is_automated=bool(entry.get("is_automated")),
            )
            for entry in document.get("results") or []
        ]
        return SearchResults(self.registry, query, results[:limit])

    async def _search_catalog(self, query: str, limit: int) -> SearchResults:
        needle = query.lower()
        names = [name for name in await self.catalog() if needle in name.lower()]
        return SearchResults(self.registry, query, [SearchResult(name) for name in names[:limit]], from_catalog=True)


def _verified_digest(body: bytes, reference: str, header: str | None, what: str) -> str:
    if ":" in reference:
        expected = Digest.parse(reference)
    elif header:
        expected = Digest.parse(header)
    else:
        return str(Digest.of_bytes(body))
    actual = Digest.of_bytes(body, expected.algorithm)
    if actual != expected:
        raise DigestMismatch(f"{what}: the registry's bytes hash to {actual}, not {expected}")
    return str(expected)


def client_for(
    registry: str,
    session: aiohttp.ClientSession,
    settings: ClientSettings | None = None,
    credentials: Credentials | None = None,
) -> RegistryClient:
    """A client for `registry`, with `credentials` or else those saved for it in config.json."""
    settings = settings or ClientSettings()
    registry = normalize_registry(registry)
    if credentials is None:
        credentials = load_credentials(registry, settings.config_dir)
    return RegistryClient(settings.transport(session, registry, credentials))


@asynccontextmanager
async def connect(
    registry: str,
    settings: ClientSettings | None = None,
    *,
    session: aiohttp.ClientSession | None = None,
    credentials: Credentials | None = None,
) -> AsyncIterator[RegistryClient]:
    """`client_for` with a session of its own when none is given (closed on exit)."""
    if session is not None:
        yield client_for(registry, session, settings, credentials)
        return
    async with new_session() as own:
        yield client_for(registry, own, settings, credentials)


def split_search_term(term: str, default_registry: str = DOCKER_HUB) -> tuple[str, str]:
    """`localhost:5000/app` -> ("localhost:5000", "app"); a term without a host searches the default."""
    first, slash, rest = term.partition("/")
    if slash and looks_like_host(first):
        return normalize_registry(first), rest
    return normalize_registry(default_registry), term


async def search(
    term: str,
    *,
    limit: int = 25,
    settings: ClientSettings | None = None,
    session: aiohttp.ClientSession | None = None,
) -> SearchResults:
    """`docker search TERM`: a host in TERM chooses the registry, else the default one."""
    settings = settings or ClientSettings()
    registry, query = split_search_term(term, settings.default_registry)
    async with connect(registry, settings, session=session) as client:
        await client.ping("search")  # so saved credentials reach private repositories' results
        return await client.search(query, limit)


__all__ = [
    "MANIFEST_ACCEPT",
    "Manifest",
    "RegistryClient",
    "SearchResult",
    "SearchResults",
    "client_for",
    "connect",
    "search",
    "split_search_term",
]
