"""`pull`: fetch an image from a registry into the local store.

Resolve the reference to a manifest (negotiating OCI and Docker types); from an index choose the
platform's manifest; download the config and the layers the store lacks, `concurrency` at a time,
each resumable and verified; store the manifest (and index) last; then `store.add_image`. Where
each blob came from is remembered for push's cross-repository mounts.

Talking HTTP is `distribution`'s job and storing bytes the store's; this module only orders them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic import ValidationError

from ocispec import mediatypes
from ocispec.manifest import Descriptor, ImageManifest
from ocispec.reference import ImageReference

from .auth import Credentials
from .blob_transfer import download_from_urls, gather_bounded
from .distribution import Manifest, RegistryClient, connect
from .errors import UnsupportedManifest
from .mounts import MountHints
from .platforms import Platform, host_platform, select_manifest
from .progress import ALREADY_EXISTS, PULL_COMPLETE, NoProgress, Progress
from .registry_http import ClientSettings

if TYPE_CHECKING:
    from .store.contract import LocalImages

DEFAULT_CONCURRENCY = 3


async def pull(
    reference: str | ImageReference,
    store: LocalImages,
    *,
    platform: str | Platform | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
    settings: ClientSettings | None = None,
    session: aiohttp.ClientSession | None = None,
    credentials: Credentials | None = None,
) -> Any:
    """Pull `reference` ("host/repo:tag", "alpine", "...@sha256:...") into `store`; its ImageRecord.

    `platform` ("linux/arm64/v8") chooses from an index; the default is this host's.
    Credentials are `credentials`, else those saved in config.json for the registry.
    """
    settings = settings or ClientSettings()
    if isinstance(reference, str):
        reference = ImageReference.parse(reference, default_registry=settings.default_registry)
    wanted = Platform.parse(platform) if isinstance(platform, str) else (platform or host_platform())
    progress = progress or NoProgress()
    async with connect(reference.registry, settings, session=session, credentials=credentials) as client:
        await client.ping("pull")
        top = await client.get_manifest(reference.repository, reference.reference)
        index: Manifest | None = None
        manifest = top
        if top.is_index:
            index = top
            chosen = select_manifest(top.document, wanted)
            manifest = await client.get_manifest(reference.repository, chosen["digest"])
            if manifest.is_index:
                raise UnsupportedManifest(f"{reference}: the index for {wanted} points at another index")
        image = _image_manifest(manifest, reference)
        await _fetch_blobs(client, reference.repository, image, store, concurrency, progress)

        if index is not None:
            await asyncio.to_thread(store.write_blob, index.data, index.digest)
        await asyncio.to_thread(store.write_blob, manifest.data, manifest.digest)
        blobs = [image.config.digest, *(layer.digest for layer in image.layers)]
        await asyncio.to_thread(MountHints(store.root).record, blobs, reference.registry, reference.repository)
        index_digest = index.digest if index is not None else None
        record = await asyncio.to_thread(store.add_image, stored_name(reference), manifest.digest, index_digest=index_digest)
        if not reference.digest:
            # As docker does, remember the digest pulled (RepoDigests), so `name@digest` finds the image.
            record = await asyncio.to_thread(
                store.add_image, f"{reference.name}@{top.digest}", manifest.digest, index_digest=index_digest
            )
        return record


def stored_name(reference: ImageReference) -> str:
    """The name the store records: `host/repo:tag`, or `host/repo@digest` when pulled by digest."""
    if reference.digest:
        return f"{reference.name}@{reference.digest}"
    return str(reference)


def _image_manifest(manifest: Manifest, reference: ImageReference) -> ImageManifest:
    if manifest.media_type not in mediatypes.IMAGE_MANIFESTS:
        raise UnsupportedManifest(f"{reference} is a {manifest.media_type}, not an image manifest")
    try:
        return ImageManifest.model_validate(manifest.document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UnsupportedManifest(f"{reference}: invalid image manifest ({where}: {first['msg']})") from None


async def _fetch_blobs(
    client: RegistryClient,
    repository: str,
    image: ImageManifest,
    store: LocalImages,
    concurrency: int,
    progress: Progress,
) -> None:
    """The config (quietly) and each distinct layer the store lacks, `concurrency` at a time."""
    layers: dict[str, Descriptor] = {}
    for layer in image.layers:
        layers.setdefault(layer.digest, layer)

    async def fetch(descriptor: Descriptor, reporter: Progress) -> None:
        if await asyncio.to_thread(store.has_blob, descriptor.digest):
            reporter.start(descriptor.digest, descriptor.size)
            reporter.done(descriptor.digest, ALREADY_EXISTS)
            return
        if mediatypes.is_foreign(descriptor.model_dump(by_alias=True)) and await client.blob_size(repository, descriptor.digest, action="pull") is None:
            await download_from_urls(list(descriptor.urls or []), descriptor.digest, descriptor.size, store,
                                     f"pull of {client.registry}/{repository}", reporter)  # fmt: skip
        else:
            await client.download_blob(repository, descriptor.digest, descriptor.size, store, reporter)
        reporter.done(descriptor.digest, PULL_COMPLETE)

    jobs = [lambda: fetch(image.config, NoProgress())]
    jobs += [lambda layer=layer: fetch(layer, progress) for layer in layers.values()]
    await gather_bounded(jobs, concurrency)
