"""Garbage collection, safe to run while clients push and pull (and from several replicas).

Mark: every manifest of every repository is a root (with `delete_untagged`, only the tagged
ones, their index children and their referrers, transitively, and any manifest younger than
the grace period); the manifest's own digest and every blob and child manifest it names are
referenced. Sweep, in two steps a grace period apart:

1. content in `blobs/` that nothing references and that was written longer than `grace` ago
   moves to `trash/` (with the time it went);
2. content in `trash/` that something references again is moved back; content that has been
   in the trash longer than `grace`, trashed by an earlier run, and is still unreferenced is
   deleted. Repository links (`_layers/`) that named it stay: a link without content answers
   like no link (404), and an upload of the same content makes it whole again, whereas
   deleting a link a racing push has just relied on would break that push.

Why a push racing gc never ends up with a manifest naming missing content: every access to
content (blob HEAD and GET, a mount, the checks of a manifest PUT, a manifest GET) goes
through `Blobs.content_info`, which moves trashed content back. A client that saw a blob
before gc trashed it finds it again when it references it; one that comes after gc deleted
it is told cleanly (a 202 to upload instead of a mount, MANIFEST_BLOB_UNKNOWN), and uploads
again. This is the race distribution's offline `garbage-collect` loses (distribution#3045,
#4569: a blob deleted between a client's HEAD and its manifest PUT).

It also reclaims what interrupted writes left behind and nobody touched within the grace
period: temporary files of a process killed mid-write, unfinished S3 multipart uploads.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

from ocispec.digest import Digest, InvalidDigest
from ocispec.manifest import ManifestInvalid, ParsedManifest, parse_manifest
from storage_backends import ObjectNotFound, StorageBackend

from . import layout

PAGE = 1000


@dataclass
class Collection:
    manifests: int = 0
    """Manifest revisions kept (the roots)."""
    referenced: int = 0
    """Distinct digests the kept manifests reference (themselves included)."""
    kept_recent: list[str] = field(default_factory=list)
    """Unreferenced but younger than the grace period."""
    trashed: list[str] = field(default_factory=list)
    """Moved to the trash by this run."""
    restored: list[str] = field(default_factory=list)
    """Taken back out of the trash: referenced again."""
    deleted: list[str] = field(default_factory=list)
    """Deleted for good (in the trash longer than the grace period)."""
    freed_bytes: int = 0
    untagged: list[str] = field(default_factory=list)
    """`name@digest` of the untagged manifests removed (`delete_untagged`)."""
    leftovers: int = 0
    """Temporary files and unfinished multipart uploads of interrupted writes, reclaimed."""
    leftover_bytes: int = 0


async def _all(storage: StorageBackend, prefix: str) -> list[str]:
    names: list[str] = []
    while page := await storage.list(prefix, start_after=names[-1] if names else None, limit=PAGE):
        names.extend(page)
    return names


async def _digests_under(storage: StorageBackend, prefix: str, algorithm: str | None = None) -> list[Digest]:
    """`<prefix>/<algorithm>/<hex>` entries as digests; with `algorithm`, `<prefix>/<hex>` ones
    of that algorithm (malformed names skipped)."""
    if algorithm is None:
        return [digest for name in await storage.list(prefix) for digest in await _digests_under(storage, f"{prefix}/{name}", name)]
    found = []
    for encoded in await _all(storage, prefix):
        try:
            found.append(Digest.parse(f"{algorithm}:{encoded}"))
        except InvalidDigest:
            continue
    return found


async def _manifest_body(storage: StorageBackend, digest: Digest) -> bytes | None:
    for key in (layout.blob(digest), layout.trashed_blob(digest)):
        try:
            return await storage.get_bytes(key)
        except ObjectNotFound:
            continue
    return None


class _Repository:
    """One repository's manifests and tags, read once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.revisions: list[Digest] = []
        self.tagged: set[Digest] = set()

    async def load(self, storage: StorageBackend) -> None:
        self.revisions = await _digests_under(storage, layout.manifest_revisions(self.name))
        for tag in await _all(storage, layout.tags_dir(self.name)):
            try:
                self.tagged.add(Digest.parse((await storage.get_bytes(layout.tag(self.name, tag))).decode()))
            except (ObjectNotFound, InvalidDigest, UnicodeDecodeError):
                continue


async def _mark(storage: StorageBackend, repo: _Repository, *, delete_untagged: bool, grace: float, now: float,
                result: Collection, dry_run: bool) -> set[str]:  # fmt: skip
    """The digests this repository's kept manifests reference; removes untagged ones if asked."""
    parsed = {}
    for digest in repo.revisions:
        body = await _manifest_body(storage, digest)
        try:
            parsed[digest] = parse_manifest(body, None) if body is not None else None
        except ManifestInvalid:
            parsed[digest] = None
    kept = set(repo.revisions)
    if delete_untagged:
        kept = await _reachable(storage, repo, parsed, grace=grace, now=now)
        for digest in sorted(set(repo.revisions) - kept, key=str):
            result.untagged.append(f"{repo.name}@{digest}")
            if not dry_run:
                await _remove_manifest(storage, repo.name, digest, parsed.get(digest))
    referenced: set[str] = set()
    for digest in kept:
        referenced.add(str(digest))
        manifest = parsed.get(digest)
        if manifest is not None:
            referenced.update(str(d) for d in [*manifest.blobs, *manifest.manifests, *manifest.foreign])
    result.manifests += len(kept)
    return referenced


async def _reachable(storage: StorageBackend, repo: _Repository, parsed: dict[Digest, ParsedManifest | None], *, grace: float, now: float) -> set[Digest]:
    revisions = set(repo.revisions)
    subjects: dict[Digest, list[Digest]] = defaultdict(list)
    for digest, manifest in parsed.items():
        if manifest is not None and manifest.subject is not None:
            subjects[manifest.subject.parsed_digest].append(digest)
    seeds = set(repo.tagged & revisions)
    for digest in revisions - seeds:  # a push may be writing an index's children right now
        try:
            info = await storage.stat(layout.manifest_revision(repo.name, digest))
        except ObjectNotFound:
            continue
        if now - info.modified < grace:
            seeds.add(digest)
    kept: set[Digest] = set()
    pending = list(seeds)
    while pending:
        digest = pending.pop()
        if digest in kept or digest not in revisions:
            continue
        kept.add(digest)
        manifest = parsed.get(digest)
        if manifest is not None:
            pending.extend(manifest.manifests)
        pending.extend(subjects.get(digest, []))
    return kept


async def _remove_manifest(storage: StorageBackend, name: str, digest: Digest, manifest: ParsedManifest | None) -> None:
    await storage.delete(layout.manifest_revision(name, digest))
    if manifest is not None and manifest.subject is not None:
        await storage.delete(layout.referrer(name, manifest.subject.parsed_digest, digest))
    await storage.delete(layout.layer_link(name, digest))


async def _stored(storage: StorageBackend, prefix: str) -> list[Digest]:
    """Digests of the content under `blobs/` (or `trash/`): `<prefix>/<alg>/<2 hex>/<hex>`."""
    found = []
    for algorithm in await storage.list(prefix):
        for shard in await storage.list(f"{prefix}/{algorithm}"):
            found += await _digests_under(storage, f"{prefix}/{algorithm}/{shard}", algorithm)
    return found


async def collect(
    storage: StorageBackend,
    *,
    grace: float = 3600.0,
    dry_run: bool = False,
    delete_untagged: bool = False,
    leftover_grace: float | None = None,
    now: float | None = None,
) -> Collection:
    """One collection; `leftover_grace` (default `grace`): how long an interrupted write's
    temporary file or multipart upload must have been untouched before it goes."""
    now = time.time() if now is None else now
    result = Collection()
    referenced: set[str] = set()
    for key in await _all(storage, layout.CATALOG):
        repo = _Repository(layout.catalog_name(key))
        await repo.load(storage)
        referenced |= await _mark(storage, repo, delete_untagged=delete_untagged, grace=grace, now=now, result=result, dry_run=dry_run)
    result.referenced = len(referenced)

    for digest in await _stored(storage, layout.BLOBS):
        if str(digest) in referenced:
            continue
        try:
            info = await storage.stat(layout.blob(digest))
        except ObjectNotFound:
            continue
        if now - info.modified < grace:
            result.kept_recent.append(str(digest))
            continue
        if not dry_run:
            try:
                await storage.move(layout.blob(digest), layout.trashed_blob(digest))
            except ObjectNotFound:
                continue  # trashed by another gc meanwhile
            await storage.put_bytes(layout.trashed_since(digest), json.dumps(now).encode())
        result.trashed.append(str(digest))

    for digest in await _stored(storage, layout.TRASH):
        if str(digest) in referenced:
            if not dry_run:
                try:
                    await storage.move(layout.trashed_blob(digest), layout.blob(digest))
                    await storage.delete(layout.trashed_since(digest))
                except ObjectNotFound:
                    continue
            result.restored.append(str(digest))
            continue
        since = await _trashed_at(storage, digest, now)
        if now - since < grace or since >= now:
            continue  # never in the run that trashed it: a later mark must have seen it unreferenced
        try:
            info = await storage.stat(layout.trashed_blob(digest))
        except ObjectNotFound:
            continue  # brought back by a client meanwhile
        if dry_run:
            result.deleted.append(str(digest))
            result.freed_bytes += info.size
            continue
        if not await storage.delete(layout.trashed_blob(digest)):
            continue  # a client brought it back first
        await storage.delete(layout.trashed_since(digest))
        result.deleted.append(str(digest))
        result.freed_bytes += info.size
    leftover_grace = grace if leftover_grace is None else leftover_grace
    result.leftovers, result.leftover_bytes = await storage.reclaim_leftovers(leftover_grace, dry_run=dry_run, now=now)
    return result


async def _trashed_at(storage: StorageBackend, digest: Digest, now: float) -> float:
    try:
        return float(json.loads(await storage.get_bytes(layout.trashed_since(digest))))
    except (ObjectNotFound, ValueError, TypeError):
        return now  # no record (yet): count from now


def report(result: Collection, *, dry_run: bool) -> str:
    """What `dockyard-registry gc` prints."""
    would = "would " if dry_run else ""
    lines = [f"untagged manifest {item}" for item in result.untagged]
    lines += [f"trash {digest}" for digest in result.trashed] + [f"restore {digest}" for digest in result.restored]
    lines += [f"delete {digest}" for digest in result.deleted]
    lines.append(
        f"{result.manifests} manifests kept, {result.referenced} digests referenced; {would}remove {len(result.untagged)} untagged "
        f"manifests; {would}trash {len(result.trashed)} blobs, {would}restore {len(result.restored)}; {would}delete "
        f"{len(result.deleted)} blobs ({result.freed_bytes} bytes); {len(result.kept_recent)} unreferenced blobs younger than "
        f"the grace period kept; {would}delete {result.leftovers} leftovers of interrupted writes ({result.leftover_bytes} bytes)"
    )
    return "\n".join(lines)
