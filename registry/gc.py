"""Garbage collection: reclaim blob content that no repository links any more.

The rule: online deletes only remove links (a repository's claim on a digest); content is
reclaimed here, by mark and sweep. Mark every digest some repository links (layers, configs
and manifests are all linked under `_layers/`), then delete unmarked blobs whose content is
older than a grace period. Run it while no client pushes (registry stopped, or pushes held
off, as distribution's `garbage-collect` requires): a push may link an unlinked blob by
mount or by re-upload at any moment, and the grace period only protects content written
recently, not old content a racing mount links again.

It also reclaims what interrupted writes left behind and nobody touched within the grace
period: temporary files of a process killed mid-write, unfinished S3 multipart uploads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from storage_backends import ObjectNotFound, StorageBackend

from . import layout

PAGE = 1000


@dataclass
class Collection:
    linked: int = 0
    """Distinct digests some repository links."""
    kept_recent: list[str] = field(default_factory=list)
    """Unlinked but younger than the grace period."""
    deleted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    leftovers: int = 0
    """Temporary files and unfinished multipart uploads of interrupted writes, reclaimed."""
    leftover_bytes: int = 0


async def _all(storage: StorageBackend, prefix: str) -> list[str]:
    names: list[str] = []
    while page := await storage.list(prefix, start_after=names[-1] if names else None, limit=PAGE):
        names.extend(page)
    return names


async def linked_digests(storage: StorageBackend) -> set[str]:
    marked: set[str] = set()
    for key in await _all(storage, layout.CATALOG):
        layers = f"{layout.repository(layout.catalog_name(key))}/_layers"
        for algorithm in await storage.list(layers):
            marked.update(f"{algorithm}:{encoded}" for encoded in await _all(storage, f"{layers}/{algorithm}"))
    return marked


async def collect(storage: StorageBackend, *, grace: float = 3600.0, dry_run: bool = False, now: float | None = None) -> Collection:
    now = time.time() if now is None else now
    result = Collection()
    marked = await linked_digests(storage)
    result.linked = len(marked)
    for algorithm in await storage.list("blobs"):
        for shard in await storage.list(f"blobs/{algorithm}"):
            for encoded in await _all(storage, f"blobs/{algorithm}/{shard}"):
                digest = f"{algorithm}:{encoded}"
                if digest in marked:
                    continue
                key = f"blobs/{algorithm}/{shard}/{encoded}"
                try:
                    info = await storage.stat(key)
                except ObjectNotFound:
                    continue
                if now - info.modified < grace:
                    result.kept_recent.append(digest)
                    continue
                if not dry_run:
                    await storage.delete(key)
                result.deleted.append(digest)
                result.freed_bytes += info.size
    result.leftovers, result.leftover_bytes = await storage.reclaim_leftovers(grace, dry_run=dry_run, now=now)
    return result
