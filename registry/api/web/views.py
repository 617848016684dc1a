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
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from ocispec import mediatypes
from ocispec.digest import Digest, InvalidDigest
from ocispec.image_config import ImageConfig, InvalidImageConfig
from ocispec.manifest import Descriptor, ImageIndex, ImageManifest
from ocispec.names import REPOSITORY_NAME, InvalidName, InvalidTag, validate_repository, validate_tag

from ...core import layout
from ...core.errors import RegistryError
from ...core.hub.models import RepositorySettings, User, Visibility, Webhook
from ...core.hub.permissions import audience, repository_actions
from ...core.hub.search import SORTS, Sort
from ...core.hub.webhooks import Delivery
from ...core.manifests import Reference
from ...core.services import Services

T = TypeVar("T")
TAGS_PER_PAGE = 25
REPOSITORIES_PER_PAGE = 25
MAX_DESCRIPTION = 25_000
MAX_SHORT_DESCRIPTION = 1_000
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
    """What the viewer may do to a repository; only pulling while sign-in is disabled."""
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


def is_namespace(text: str) -> bool:
    """One component of a repository name: a user, an organization, or (auth off) any prefix."""
    return len(text) <= 64 and "/" not in text and REPOSITORY_NAME.match(text) is not None


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
    pushed: float | None = None
    tag_count: int | None = None
    """Counted for lists; None where it was not counted."""


def _summary(name: str, settings: RepositorySettings | None, tag_count: int | None = None) -> RepositorySummary:
    if settings is None:
        return RepositorySummary(name, "", 0, None, tag_count=tag_count)
    return RepositorySummary(
        name, settings.description, settings.star_count, settings.visibility, settings.pull_count, settings.pushed, tag_count
    )


@dataclass(frozen=True)
class Listing:
    """One page of repositories: the home page, a search, or a namespace."""

    query: str
    sort: Sort
    total: int
    page: int
    pages: int
    results: list[RepositorySummary]


def parse_sort(text: str, default: Sort) -> Sort:
    return next((sort for sort in SORTS if sort == text), default)


async def _tag_count(services: Services, name: str) -> int:
    return len(await services.storage.list(layout.tags_dir(name)))


async def listing(
    services: Services, viewer: Viewer, query: str, *, page: int, sort: Sort, namespace: str | None = None,
    page_size: int = REPOSITORIES_PER_PAGE,
) -> Listing:
    """Repositories the viewer may pull, from the metadata database, ranked and filtered exactly
    as `/v1/search` does it; each with its tag count."""
    seen_by = await audience(services.hub, viewer.user, auth_enabled=viewer.auth_enabled)
    found = await services.hub.search.search(query, page=page, page_size=page_size, audience=seen_by, sort=sort, namespace=namespace)
    counts = await _bounded(_tag_count(services, entry.name) for entry in found.results)
    results = [_summary(entry.name, entry, count) for entry, count in zip(found.results, counts)]
    return Listing(query, sort, found.total, page, max(1, math.ceil(found.total / page_size)), results)


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


TagSort = Literal["pushed", "name"]


@dataclass(frozen=True)
class RepositoryView:
    summary: RepositorySummary
    created: float | None
    readme: str
    """The full description (Markdown source); empty when there is none."""
    tags: list[Tag]
    tag_count: int
    """Every tag of the repository."""
    matching: int
    """Tags matching the filter."""
    tag_filter: str
    tag_sort: TagSort
    page: int
    pages: int
    actions: frozenset[str]
    starred: bool
    pull_tag: str | None
    """The tag of the pull command: `latest` when there is one, else the newest."""

    @property
    def can_admin(self) -> bool:
        return "admin" in self.actions

    @property
    def can_delete(self) -> bool:
        return "delete" in self.actions


async def _tag(services: Services, name: str, tag: str, pushed: float) -> Tag | None:
    try:
        digest = await services.manifests.resolve(name, Reference(tag=tag))
        return Tag(tag, pushed, await manifest_details(services, name, digest))
    except (RegistryError, ValueError):
        return None


async def visible_repository(services: Services, viewer: Viewer, name: str) -> tuple[str, frozenset[str]]:
    """The checked name of a repository the viewer may pull, and every action they may take on it
    (none that change anything while sign-in is disabled: the page is read-only then)."""
    name = parse_name(name)
    actions = await actions_of(services, viewer, name)
    if "pull" not in actions or not await services.repositories.exists(name):
        raise NotVisible(name)
    return name, actions


async def repository(
    services: Services, viewer: Viewer, name: str, page: int = 1, tag_filter: str = "", tag_sort: TagSort = "pushed"
) -> RepositoryView:
    """A repository with one page of its tags (newest push first, or by name), optionally only
    those whose name contains `tag_filter`."""
    name, actions = await visible_repository(services, viewer, name)
    settings = await services.hub.repositories.get(name)
    every = await services.repositories.tag_times(name)
    tag_filter = tag_filter.strip()[:128]
    times = [item for item in every if tag_filter.lower() in item[0].lower()]
    times.sort(key=(lambda item: item[0]) if tag_sort == "name" else (lambda item: (-item[1], item[0])))
    pages = max(1, math.ceil(len(times) / TAGS_PER_PAGE))
    page = min(max(page, 1), pages)
    shown = times[(page - 1) * TAGS_PER_PAGE : page * TAGS_PER_PAGE]
    tags = await _bounded(_tag(services, name, tag, pushed) for tag, pushed in shown)
    newest = max(every, key=lambda item: item[1])[0] if every else None
    starred = viewer.user is not None and await services.hub.repositories.starred(name, viewer.user.name)
    return RepositoryView(
        summary=_summary(name, settings, len(every)),
        created=settings.created if settings else None,
        readme=settings.full_description if settings else "",
        tags=[tag for tag in tags if tag is not None],
        tag_count=len(every),
        matching=len(times),
        tag_filter=tag_filter,
        tag_sort=tag_sort,
        page=page,
        pages=pages,
        actions=actions,
        starred=starred,
        pull_tag="latest" if any(tag == "latest" for tag, _ in every) else newest,
    )


# -- one image ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerStep:
    """One step of an image's history beside the layer it made (Docker Hub's layer view)."""

    command: str
    created: str
    layer: Layer | None
    """None for a step that changed only the config (ENV, CMD, ...)."""


def layer_steps(details: ManifestDetails) -> list[LayerStep]:
    """History entries paired in order with the layers they made; layers the history does not
    account for (an image made without one) come last, with no command."""
    layers = iter(details.layers)
    steps: list[LayerStep] = []
    for entry in details.config.history if details.config else []:
        layer = None if entry.empty_layer else next(layers, None)
        steps.append(LayerStep(entry.created_by, entry.created, layer))
    steps.extend(LayerStep("", "", layer) for layer in layers)
    return steps


@dataclass(frozen=True)
class ImageView:
    repository: str
    tag: str | None
    pushed: float | None
    details: ManifestDetails
    index: str | None = None
    """The digest of the index this image was opened from, when that index lists it."""

    @property
    def reference(self) -> str:
        """What follows the name in a pull command: `:tag` or `@digest`."""
        return f":{self.tag}" if self.tag else f"@{self.details.digest}"

    @property
    def steps(self) -> list[LayerStep]:
        return layer_steps(self.details)


async def _lists(services: Services, name: str, index: str, child: Digest) -> bool:
    """`index` is the digest of an index of `name` that lists `child`."""
    try:
        media_type, document = await _read_manifest(services, name, Digest.parse(index))
        return media_type in mediatypes.INDEXES and any(
            entry.get("digest") == str(child) for entry in document.get("manifests", []) if isinstance(entry, dict)
        )
    except (InvalidDigest, RegistryError, ValueError):
        return False


async def image(
    services: Services, viewer: Viewer, name: str, *, tag: str | None = None, digest: str | None = None, index: str | None = None
) -> ImageView:
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
    parent = index if index and await _lists(services, name, index, resolved) else None
    return ImageView(name, tag, pushed, details, parent)


# -- settings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WebhookView:
    hook: Webhook
    deliveries: list[Delivery]
    """The most recent first."""


@dataclass(frozen=True)
class SettingsView:
    name: str
    description: str
    full_description: str
    visibility: Visibility
    editable: bool
    webhooks: list[WebhookView] = field(default_factory=list)


RECENT_DELIVERIES = 5


async def repository_settings(services: Services, viewer: Viewer, name: str) -> SettingsView:
    """Settings as a form: editable by those with the admin action; read-only with auth off."""
    name, actions = await visible_repository(services, viewer, name)
    editable = viewer.auth_enabled and "admin" in actions
    if viewer.auth_enabled and not editable:
        raise NotAllowed(f"only administrators of {name} change its settings")
    settings = await services.hub.repositories.get(name)
    if settings is None:
        return SettingsView(name, "", "", services.hub.repositories.default_visibility, editable)
    hooks = await services.webhooks.store.list(name) if editable else []
    deliveries = await _bounded(services.webhooks.deliveries(hook.id) for hook in hooks)
    webhooks = [WebhookView(hook, list(reversed(sent))[:RECENT_DELIVERIES]) for hook, sent in zip(hooks, deliveries)]
    return SettingsView(name, settings.description, settings.full_description, settings.visibility, editable, webhooks)


async def admin_of(services: Services, viewer: Viewer, name: str) -> str:
    """The name of a repository the viewer administers (sign-in enabled, admin action)."""
    view_name, actions = await visible_repository(services, viewer, name)
    if not viewer.auth_enabled:
        raise NotAllowed("settings are read-only while sign-in is disabled")
    if "admin" not in actions:
        raise NotAllowed(f"only administrators of {view_name} change its settings")
    return view_name


def checked_settings(description: str | None, full_description: str | None, visibility: str) -> dict[str, str]:
    """Form values as `PATCH /api/v1/repositories/<name>` takes them (a field the form did not
    send stays as it is), or InvalidInput."""
    if visibility not in ("public", "private"):
        raise InvalidInput("visibility must be public or private")
    changes = {"visibility": visibility}
    if description is not None:
        changes["description"] = description.replace("\r\n", "\n")
        if len(changes["description"]) > MAX_SHORT_DESCRIPTION:
            raise InvalidInput(f"the short description is longer than {MAX_SHORT_DESCRIPTION} characters")
    if full_description is not None:
        changes["full_description"] = full_description.replace("\r\n", "\n")
        if len(changes["full_description"]) > MAX_DESCRIPTION:
            raise InvalidInput(f"the README is longer than {MAX_DESCRIPTION} characters")
    return changes


async def update_settings(
    services: Services, viewer: Viewer, name: str, description: str | None, full_description: str | None, visibility: str
) -> None:
    """Change descriptions and visibility, as `PATCH /api/v1/repositories/<name>` does."""
    name = await admin_of(services, viewer, name)
    await services.hub.repositories.update(name, **checked_settings(description, full_description, visibility))
