"""What the web pages show, gathered as plain async functions over `Services`.

Every function takes the `Viewer` and decides what that visitor may see with the Hub's
permission rules (`registry.core.hub.permissions`): a repository the visitor may not pull is
reported exactly as one that does not exist. Nothing here knows about HTTP or HTML, and
nothing here writes except `update_settings`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from ocispec import mediatypes
from ocispec.digest import Digest, InvalidDigest
from ocispec.image_config import ImageConfig, InvalidImageConfig
from ocispec.manifest import Descriptor, ImageIndex, ImageManifest
from ocispec.names import InvalidName, InvalidTag, validate_repository, validate_tag

from ...core.errors import RegistryError
from ...core.hub.models import RepositorySettings, User, Visibility
from ...core.hub.permissions import audience, repository_actions
from ...core.manifests import Reference
from ...core.services import Services

T = TypeVar("T")
TAGS_PER_PAGE = 25
REPOSITORIES_PER_PAGE = 50
SEARCH_PAGE_SIZE = 25
MAX_DESCRIPTION = 25_000
MAX_CONFIG_SIZE = 4 * 1024 * 1024
CONCURRENCY = 16
IMAGE_CONFIGS = frozenset({mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG})
ATTESTATION_ANNOTATION = "vnd.docker.reference.type"


class NotVisible(Exception):
    """The repository or image does not exist, or the visitor may not pull it (404 either way)."""


class NotAllowed(Exception):
    """The visitor sees the repository but may not do this (403)."""


class InvalidInput(Exception):
    """A form value the registry refuses; the message is shown next to the form."""


@dataclass(frozen=True)
class Viewer:
    """Who is looking. With auth disabled everyone sees everything and changes nothing."""

    user: User | None
    auth_enabled: bool

    @property
    def name(self) -> str | None:
        return self.user.name if self.user else None


async def actions_of(services: Services, viewer: Viewer, name: str) -> frozenset[str]:
    if not viewer.auth_enabled:
        return frozenset({"pull"})
    return await repository_actions(services.hub, viewer.user, name)


async def _can_pull(services: Services, viewer: Viewer, name: str) -> bool:
    return "pull" in await actions_of(services, viewer, name)


async def _bounded(jobs: Iterable[Awaitable[T]], limit: int = CONCURRENCY) -> list[T]:
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Awaitable[T]) -> T:
        async with semaphore:
            return await job

    return list(await asyncio.gather(*(one(job) for job in jobs)))


def parse_name(text: str) -> str:
    try:
        return validate_repository(text)
    except InvalidName:
        raise NotVisible(text) from None


# -- repositories ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RepositorySummary:
    name: str
    description: str
    stars: int
    visibility: Visibility | None
    """None when the repository has no Hub settings (pushed before the Hub existed)."""
    pulls: int = 0


@dataclass(frozen=True)
class BrowsePage:
    repositories: list[RepositorySummary]
    next_after: str | None
    """The `after` of the next page, None on the last page."""


def _summary(name: str, settings: RepositorySettings | None) -> RepositorySummary:
    if settings is None:
        return RepositorySummary(name, "", 0, None)
    return RepositorySummary(name, settings.description, settings.star_count, settings.visibility, settings.pull_count)


async def browse(services: Services, viewer: Viewer, after: str | None, limit: int = REPOSITORIES_PER_PAGE) -> BrowsePage:
    """Repositories the viewer may pull, in name order, from the catalog (the source of truth)."""

    async def visible(name: str) -> bool:
        return await _can_pull(services, viewer, name)

    page = await services.repositories.catalog(limit, after, visible=visible)
    settings = await services.hub.repositories.many(page.items)
    summaries = [_summary(name, settings.get(name)) for name in page.items]
    return BrowsePage(summaries, page.items[-1] if page.more and page.items else None)


@dataclass(frozen=True)
class SearchResults:
    query: str
    total: int
    page: int
    pages: int
    results: list[RepositorySummary]


async def search(services: Services, viewer: Viewer, query: str, page: int, page_size: int = SEARCH_PAGE_SIZE) -> SearchResults:
    """The search index, ranked and filtered exactly as `/v1/search` does it."""

    seen_by = await audience(services.hub, viewer.user, auth_enabled=viewer.auth_enabled)
    found = await services.hub.search.search(query, page=page, page_size=page_size, audience=seen_by)
    results = [_summary(entry.name, entry) for entry in found.results]
    return SearchResults(query, found.total, page, max(1, math.ceil(found.total / page_size)), results)


# -- manifests -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Platform:
    """One image of an index (or the one image of a plain manifest)."""

    platform: str
    digest: str
    size: int | None
    """Config plus layers; None when the image's manifest cannot be read."""


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int
    media_type: str


@dataclass
class ManifestDetails:
    digest: str
    media_type: str
    kind: str
    """'image', 'index', or 'artifact' (an image manifest whose config is not an image config)."""
    size: int | None = None
    """Image: config plus layers. Index: None (see `platforms`)."""
    config_descriptor: Layer | None = None
    layers: list[Layer] = field(default_factory=list)
    config: ImageConfig | None = None
    platforms: list[Platform] = field(default_factory=list)
    artifact_type: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    unreadable: str = ""
    """Why the manifest could not be understood; empty when it could."""

    @property
    def platform_names(self) -> list[str]:
        if self.kind == "index":
            return [item.platform for item in self.platforms]
        return [self.config.platform] if self.config else []


def _platform_of(descriptor: Descriptor) -> str:
    platform = descriptor.platform or {}
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return "/".join(str(part) for part in parts if part) or "unknown"


async def _read_manifest(services: Services, name: str, digest: Digest) -> tuple[str, dict[str, Any]]:
    stored = await services.manifests.get(name, Reference(digest=digest))
    document = json.loads(stored.body)
    if not isinstance(document, dict):
        raise ValueError("manifest is not a JSON object")
    return stored.media_type, document


async def _read_config(services: Services, name: str, descriptor: Descriptor) -> ImageConfig | None:
    if descriptor.media_type not in IMAGE_CONFIGS or descriptor.size > MAX_CONFIG_SIZE:
        return None
    try:
        raw = await services.blobs.read_small(name, descriptor.parsed_digest, MAX_CONFIG_SIZE)
        return ImageConfig.parse(raw) if raw is not None else None
    except (RegistryError, InvalidImageConfig):
        return None


async def _image_size(services: Services, name: str, digest: Digest) -> int | None:
    try:
        media_type, document = await _read_manifest(services, name, digest)
        if media_type not in mediatypes.IMAGE_MANIFESTS:
            return None
        manifest = ImageManifest.model_validate(document)
    except (RegistryError, ValueError):
        return None
    return manifest.config.size + sum(layer.size for layer in manifest.layers)


def _is_attestation(descriptor: Descriptor) -> bool:
    return ATTESTATION_ANNOTATION in (descriptor.annotations or {})


async def manifest_details(services: Services, name: str, digest: Digest) -> ManifestDetails:
    """Everything shown about one manifest; an index's children are read for their sizes."""
    try:
        media_type, document = await _read_manifest(services, name, digest)
    except ValueError as error:
        return ManifestDetails(str(digest), "", "unknown", unreadable=str(error))
    try:
        if media_type in mediatypes.INDEXES:
            index = ImageIndex.model_validate(document)
            children = [child for child in index.manifests if not _is_attestation(child)]
            sizes = await _bounded(_image_size(services, name, child.parsed_digest) for child in children)
            return ManifestDetails(
                str(digest),
                media_type,
                "index",
                platforms=[Platform(_platform_of(child), child.digest, size) for child, size in zip(children, sizes)],
                artifact_type=index.artifact_type or "",
                annotations=dict(index.annotations or {}),
            )
        manifest = ImageManifest.model_validate(document)
    except ValidationError as error:
        return ManifestDetails(str(digest), media_type, "unknown", unreadable=str(error.errors()[0]["msg"]))
    config = await _read_config(services, name, manifest.config)
    is_image = manifest.config.media_type in IMAGE_CONFIGS
    return ManifestDetails(
        str(digest),
        media_type,
        "image" if is_image else "artifact",
        size=manifest.config.size + sum(layer.size for layer in manifest.layers),
        config_descriptor=Layer(manifest.config.digest, manifest.config.size, manifest.config.media_type),
        layers=[Layer(layer.digest, layer.size, layer.media_type) for layer in manifest.layers],
        config=config,
        artifact_type=manifest.artifact_type or ("" if is_image else manifest.config.media_type),
        annotations=dict(manifest.annotations or {}),
    )


# -- a repository and its tags -----------------------------------------------------------------
@dataclass(frozen=True)
class Tag:
    name: str
    pushed: float
    details: ManifestDetails


@dataclass(frozen=True)
class RepositoryView:
    summary: RepositorySummary
    created: float | None
    tags: list[Tag]
    tag_count: int
    page: int
    pages: int
    can_admin: bool
    pull_tag: str | None
    """The tag of the pull command: `latest` when there is one, else the newest."""


async def _tag(services: Services, name: str, tag: str, pushed: float) -> Tag | None:
    try:
        digest = await services.manifests.resolve(name, Reference(tag=tag))
        return Tag(tag, pushed, await manifest_details(services, name, digest))
    except (RegistryError, ValueError):
        return None


async def repository(services: Services, viewer: Viewer, name: str, page: int = 1) -> RepositoryView:
    """A repository with one page of its tags, newest push first."""
    name = parse_name(name)
    actions = await actions_of(services, viewer, name)
    if "pull" not in actions or not await services.repositories.exists(name):
        raise NotVisible(name)
    settings = await services.hub.repositories.get(name)
    times = sorted(await services.repositories.tag_times(name), key=lambda item: (-item[1], item[0]))
    pages = max(1, math.ceil(len(times) / TAGS_PER_PAGE))
    page = min(max(page, 1), pages)
    shown = times[(page - 1) * TAGS_PER_PAGE : page * TAGS_PER_PAGE]
    tags = await _bounded(_tag(services, name, tag, pushed) for tag, pushed in shown)
    return RepositoryView(
        summary=_summary(name, settings),
        created=settings.created if settings else None,
        tags=[tag for tag in tags if tag is not None],
        tag_count=len(times),
        page=page,
        pages=pages,
        can_admin=viewer.auth_enabled and "admin" in actions,
        pull_tag="latest" if any(tag == "latest" for tag, _ in times) else (times[0][0] if times else None),
    )


# -- one image ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageView:
    repository: str
    tag: str | None
    pushed: float | None
    details: ManifestDetails

    @property
    def reference(self) -> str:
        """What follows the name in a pull command: `:tag` or `@digest`."""
        return f":{self.tag}" if self.tag else f"@{self.details.digest}"


async def image(services: Services, viewer: Viewer, name: str, *, tag: str | None = None, digest: str | None = None) -> ImageView:
    """An image (or index) by tag or by digest, with its layers and config."""
    name = parse_name(name)
    if not await _can_pull(services, viewer, name):
        raise NotVisible(name)
    pushed: float | None = None
    try:
        if tag is not None:
            validate_tag(tag)
            resolved = await services.manifests.resolve(name, Reference(tag=tag))
            pushed = await services.repositories.tag_pushed(name, tag)
        else:
            resolved = Digest.parse(digest or "")
        details = await manifest_details(services, name, resolved)
    except (InvalidTag, InvalidDigest, RegistryError):
        raise NotVisible(f"{name}:{tag or digest}") from None
    return ImageView(name, tag, pushed, details)


# -- settings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SettingsView:
    name: str
    description: str
    visibility: Visibility
    editable: bool


async def repository_settings(services: Services, viewer: Viewer, name: str) -> SettingsView:
    """Settings as a form: editable by those with the admin action; read-only with auth off."""
    name = parse_name(name)
    actions = await actions_of(services, viewer, name)
    if "pull" not in actions or not await services.repositories.exists(name):
        raise NotVisible(name)
    editable = viewer.auth_enabled and "admin" in actions
    if viewer.auth_enabled and not editable:
        raise NotAllowed(f"only administrators of {name} change its settings")
    settings = await services.hub.repositories.get(name)
    if settings is None:
        return SettingsView(name, "", services.hub.repositories.default_visibility, editable)
    return SettingsView(name, settings.description, settings.visibility, editable)


async def update_settings(services: Services, viewer: Viewer, name: str, description: str, visibility: str) -> None:
    """Change description and visibility, as `PATCH /api/v1/repositories/<name>` does."""
    view = await repository_settings(services, viewer, name)
    if not view.editable:
        raise NotAllowed("settings are read-only while sign-in is disabled")
    if visibility not in ("public", "private"):
        raise InvalidInput("visibility must be public or private")
    description = description.replace("\r\n", "\n")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(f"the description is longer than {MAX_DESCRIPTION} characters")
    await services.hub.repositories.update(view.name, description=description, visibility=visibility)

