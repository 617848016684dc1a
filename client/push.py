"""`push`: send an image from the local store to a registry.

For each blob (config and layers, `concurrency` at a time): skip it when the registry's
repository already has it (`HEAD`), else mount it from another repository of the same registry
known to hold it (`POST ?mount=&from=`), else upload it (one PUT when small, `PATCH` chunks
beyond `chunk_threshold`). The manifest goes last, byte-exact, so its digest is the image's.

Talking HTTP is `distribution`'s job and reading bytes the store's; this module only orders them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from ocispec import mediatypes
from ocispec.reference import ImageReference

from .auth import Credentials
from .blob_transfer import DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_THRESHOLD, gather_bounded
from .distribution import RegistryClient, connect, manifest_media_type
from .errors import UnsupportedManifest
from .mounts import MountHints
from .progress import LAYER_EXISTS, MOUNTED_FROM, PUSHED, NoProgress, Progress
from .registry_http import ClientSettings

if TYPE_CHECKING:
    from .store.contract import LocalImages
    from .store.images import ImageRecord

DEFAULT_CONCURRENCY = 3


async def push(
    source: str,
    store: LocalImages,
    target: str | ImageReference | None = None,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
    chunk_threshold: int = DEFAULT_CHUNK_THRESHOLD,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    settings: ClientSettings | None = None,
    session: aiohttp.ClientSession | None = None,
    credentials: Credentials | None = None,
) -> str:
    """Push the stored image `source` (a name or image ID) to `target` (default: `source`'s name).

    Returns the manifest digest the registry now holds under the target's tag.
    """
    settings = settings or ClientSettings()
    progress = progress or NoProgress()
    record = await asyncio.to_thread(_resolve, store, source, settings)
    if target is None:
        target = ImageReference.parse(source, default_registry=settings.default_registry)
    elif isinstance(target, str):
        target = ImageReference.parse(target, default_registry=settings.default_registry)
    data = await asyncio.to_thread(store.read_blob, record.manifest_digest)
    media_type = manifest_media_type(data, None)
    if media_type not in mediatypes.IMAGE_MANIFESTS:
        raise UnsupportedManifest(f"{source} is stored as a {media_type}; only image manifests can be pushed")
    document = json.loads(data)
    config = document["config"]
    # non-distributable ("foreign") layers stay where their urls say, as docker leaves them
    layers = {layer["digest"]: layer for layer in document.get("layers") or [] if not mediatypes.is_foreign(layer)}
    hints = MountHints(store.root)

    async with connect(target.registry, settings, session=session, credentials=credentials) as client:
        await client.ping("push")
        sender = _BlobSender(client, target.repository, store, hints, chunk_threshold, chunk_size)
        jobs = [lambda: sender.send(config, NoProgress())]
        jobs += [lambda layer=layer: sender.send(layer, progress) for layer in layers.values()]
        await gather_bounded(jobs, concurrency)
        algorithm = record.manifest_digest.split(":", 1)[0]
        digest = await client.put_manifest(target.repository, target.tag or target.reference, data, media_type, algorithm)
        await asyncio.to_thread(hints.record, [config["digest"], *layers], target.registry, target.repository)
        if digest == record.manifest_digest:
            # The pushed digest joins the image's RepoDigests, as docker records it.
            await asyncio.to_thread(store.add_image, f"{target.name}@{digest}", record.manifest_digest)
        return digest


def _resolve(store: LocalImages, source: str, settings: ClientSettings) -> ImageRecord:
    """The store's record for a name (normalised as the store records it) or an image ID."""
    try:
        name = str(ImageReference.parse(source, default_registry=settings.default_registry))
    except ValueError:
        return store.resolve(source)
    try:
        return store.resolve(name)
    except LookupError:
        return store.resolve(source)


class _BlobSender:
    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        store: LocalImages,
        hints: MountHints,
        chunk_threshold: int,
        chunk_size: int,
    ) -> None:
        self.client = client
        self.repository = repository
        self.store = store
        self.hints = hints
        self.chunk_threshold = chunk_threshold
        self.chunk_size = chunk_size

    async def send(self, descriptor: dict[str, Any], progress: Progress) -> None:
        digest, size = descriptor["digest"], int(descriptor["size"])
        if await self.client.blob_size(self.repository, digest) is not None:
            progress.start(digest, size)
            progress.done(digest, LAYER_EXISTS)
            return
        location = None
        sources = await asyncio.to_thread(self.hints.sources, digest, self.client.registry, exclude=self.repository)
        if sources:  # the most recent holder; a refused mount opens an upload session, used below
            location = await self.client.mount_blob(self.repository, digest, sources[0])
            if location is None:
                progress.start(digest, size)
                progress.done(digest, f"{MOUNTED_FROM} {sources[0]}")
                return
        path: Path = await asyncio.to_thread(self.store.blob_path, digest)
        await self.client.upload_blob(
            self.repository,
            digest,
            size,
            path,
            location=location,
            progress=progress,
            chunk_threshold=self.chunk_threshold,
            chunk_size=self.chunk_size,
        )
        progress.done(digest, PUSHED)
