"""`ImageStore`: the local layered image store that pull, push, the CLI and the engine share.

On disk, under `root` (see `default_root()`):

```
oci-layout                 {"imageLayoutVersion": "1.0.0"}
index.json                 OCI image index, one descriptor per name (ref.name = full name)
blobs/sha256/<hex>         every blob once: manifests, configs, layers, indexes
ingest/<hex>.partial       resumable downloads, never visible as blobs
snapshots/<chain hex>/     fs/ = one layer's diff in overlayfs form, snapshot.json
dockyard.json              the store's metadata: images, names (the source of truth)
holds/<holder>.json        containers using an image: kept, never deleted under them
lock                       store-wide flock for metadata changes
locks/                     per-blob ingest and per-chain unpack flocks
```

It is an OCI image layout, so `skopeo copy oci:<root>:<full name> ...` reads images out of it
(the root path must not contain ':'). All of it is synchronous file I/O, safe for several
processes at once (see blobs.py, images.py, unpack.py for each guarantee); async callers use
`asyncio.to_thread`. The store never talks to a registry and never parses user-facing short
names: callers pass normalised full names (`client.reference.ImageReference` -> `str()`).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ocispec.image_config import ImageConfig

from .blobs import BlobStore, Ingest
from .errors import BlobNotFound, InvalidStoreReference, SnapshotMissing
from .files import atomic_write, create_if_absent
from .images import (
    Catalog,
    Hold,
    ImageRecord,
    RemovalReport,
    check_index_lists,
    empty_index,
    find,
    is_digest_name,
    normalize_name,
    plan_removal,
    record_from_blobs,
    with_name,
)
from .unpack import SnapshotInfo, Snapshotter, chain_ids, materialize, remove_tree

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}


def default_root() -> Path:
    """`$XDG_DATA_HOME/dockyard`, else `~/.local/share/dockyard`."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "dockyard"


class ImageStore:
    """See the module docstring; the API is the contract in notes/client-design.md."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._blobs = BlobStore(self.root)
        self._snapshots = Snapshotter(self.root)
        self._catalog = Catalog(self.root)
        create_if_absent(self.root / "oci-layout", json.dumps(OCI_LAYOUT).encode())
        create_if_absent(self.root / "index.json", empty_index())

    # -- blobs ---------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        return self._blobs.has(digest)

    def blob_path(self, digest: str) -> Path:
        """The blob's file (to stream it, e.g. for push); BlobNotFound if absent."""
        return self._blobs.existing_path(digest)

    def blob_size(self, digest: str) -> int:
        return self._blobs.size(digest)

    def read_blob(self, digest: str) -> bytes:
        """A small blob (manifest, config, index), verified against its digest."""
        return self._blobs.read(digest)

    def write_blob(self, data: bytes, expected_digest: str | None = None) -> str:
        """Store `data` atomically; returns its digest (DigestMismatch if not `expected_digest`)."""
        return self._blobs.write(data, expected_digest)

    def ingest(self, digest: str, size: int | None = None) -> Ingest:
        """A resumable streamed write of one blob (context manager; see `Ingest`)."""
        return self._blobs.ingest(digest, size)

    # -- images --------------------------------------------------------------------------------

    def add_image(
        self, reference: str | None, manifest_digest: str, *, index_digest: str | None = None, parent: str | None = None
    ) -> ImageRecord:
        """Record the image manifest `manifest_digest` (whose blobs are all present) under `reference`,
        or with no name when `reference` is None (as `docker load` keeps an untagged image)."""
        name = normalize_name(reference) if reference is not None else None
        if name is not None and is_digest_name(name) and name.split("@", 1)[1] not in (manifest_digest, index_digest):
            raise InvalidStoreReference(
                f"{reference} names the digest {name.split('@', 1)[1]}, which is neither the manifest {manifest_digest} "
                "nor its index"
            )
        added = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        label = name if name is not None else manifest_digest
        record = record_from_blobs(label, manifest_digest, self._blobs.read, index_digest=index_digest, added=added)
        if parent is not None:
            record = replace(record, parent=parent)
        if index_digest is not None:
            check_index_lists(self._blobs.read(index_digest), index_digest, manifest_digest)
        with self._catalog.locked() as state:
            # Under the lock, so a concurrent rmi cannot delete a blob between this check and the save.
            for digest in sorted(record.blobs()):
                if not self._blobs.has(digest):
                    raise BlobNotFound(f"cannot add {label}: blob {digest} is not in the store")
            if manifest_digest not in state:
                state[manifest_digest] = replace(record, names=())
            elif parent is not None and state[manifest_digest].parent is None:
                state[manifest_digest] = replace(state[manifest_digest], parent=parent)
            if name is not None:
                state = with_name(state, manifest_digest, name, index_digest=index_digest)
            self._catalog.save(state)
            return state[manifest_digest]

    def tag(self, source: str, target: str) -> None:
        """Point the name `target` (a tag, not a digest) at the image `source` names or identifies."""
        name = normalize_name(target)
        if is_digest_name(name):
            raise InvalidStoreReference(f"refusing to create a tag with a digest reference: {target}")
        with self._catalog.locked() as state:
            key = find(state, source).key
            self._catalog.save(with_name(state, key, name))

    def resolve(self, reference: str) -> ImageRecord:
        """The image a manifest digest, full name, `host/repo@digest`, or full/short image ID
        means (NoSuchImage otherwise)."""
        state = self._catalog.load()
        return state[find(state, reference).key]

    def images(self) -> list[ImageRecord]:
        """All images, newest first (by the config's created time, then by when they were added)."""
        records = list(self._catalog.load().values())
        return sorted(records, key=lambda r: (r.created or "", r.added or ""), reverse=True)

    def config(self, image: ImageRecord) -> dict[str, Any]:
        """The image config as stored (for deriving a new image's config from it)."""
        return json.loads(self._blobs.read(image.config_digest))

    def image_config(self, image: ImageRecord) -> ImageConfig:
        """The image config, parsed (for reading it)."""
        return ImageConfig.parse(self._blobs.read(image.config_digest))

    def manifest(self, image: ImageRecord) -> dict[str, Any]:
        return json.loads(self._blobs.read(image.manifest_digest))

    def remove(self, reference: str, force: bool = False) -> RemovalReport:
        """`rmi`: untag `reference` (a name), or remove the image (an ID: refused without `force`
        when its names span several repositories); blobs and snapshots go only when no image
        still uses them."""
        trash: list[Path] = []
        with self._catalog.locked() as state:
            plan = plan_removal(state, reference, force=force, holds=self.holds())
            self._catalog.save(plan.state)  # metadata first: a crash now leaks blobs, never dangles
            for digest in plan.blobs:
                self._blobs.delete(digest)
            needed = {chain for record in plan.state.values() for chain in record.chain_ids}
            for chain in [*plan.chains, *self._snapshots.on_disk()]:
                if chain not in needed:
                    retired = self._snapshots.retire(chain)
                    if retired is not None:
                        trash.append(retired)
        for path in trash:
            remove_tree(path)
        self._snapshots.sweep()
        self._blobs.sweep()
        return plan.report

    # -- containers' holds ---------------------------------------------------------------------

    def hold(self, holder: str, image: ImageRecord | str, *, running: bool = False) -> ImageRecord:
        """Record that `holder` (a container ID) uses `image`, so that no `rmi` of any process
        deletes the image or its snapshots while the hold exists. Checked and written under the
        store lock: an image removed a moment before raises NoSuchImage."""
        with self._catalog.locked() as state:
            record = state[find(state, image if isinstance(image, str) else image.manifest_digest).key]
            self._write_hold(Hold(holder, record.config_digest, running))
            return record

    def set_hold_running(self, holder: str, running: bool) -> None:
        with self._catalog.locked():
            for hold in self.holds():
                if hold.holder == holder:
                    self._write_hold(replace(hold, running=running))

    def release(self, holder: str) -> None:
        """The holder no longer uses its image (its container was removed)."""
        with self._catalog.locked():
            (self.root / "holds" / f"{holder}.json").unlink(missing_ok=True)

    def holds(self) -> list[Hold]:
        found = []
        directory = self.root / "holds"
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            try:
                data = json.loads(path.read_bytes())
                found.append(Hold(data["holder"], data["image"], bool(data.get("running"))))
            except (OSError, ValueError, KeyError):
                continue
        return found

    def _write_hold(self, hold: Hold) -> None:
        directory = self.root / "holds"
        directory.mkdir(exist_ok=True)
        data = {"holder": hold.holder, "image": hold.image, "running": hold.running}
        atomic_write(directory / f"{hold.holder}.json", json.dumps(data).encode())

    # -- unpacking -----------------------------------------------------------------------------

    def unpack(self, image: ImageRecord | str) -> list[Path]:
        """Unpack every layer not yet unpacked (idempotent); the snapshot dirs, lowest first."""
        image = self._record(image)
        chains = chain_ids(image.diff_ids)
        for index, (layer, diff_id, chain) in enumerate(zip(image.layers, image.diff_ids, chains)):
            self._snapshots.ensure(
                chain,
                parent=chains[index - 1] if index else None,
                blob=lambda digest=layer.digest: self._blobs.existing_path(digest),
                media_type=layer.media_type,
                digest=layer.digest,
                diff_id=diff_id,
            )
        return self.snapshot_dirs(image)

    def snapshot_dirs(self, image: ImageRecord | str) -> list[Path]:
        """The unpacked layers, lowest first, for overlayfs (`lowerdir=` takes them top first:
        reverse this list). SnapshotMissing if the image is not unpacked."""
        return [info.fs for info in self._snapshot_infos(self._record(image))]

    def snapshot(self, chain_id: str) -> SnapshotInfo | None:
        """One unpacked layer (its `fs` dir and metadata, `meta["size"]` its unpacked bytes), or
        None when that layer is not unpacked."""
        try:
            return self._snapshots.info(chain_id)
        except SnapshotMissing:
            return None

    def overlay_ready(self, image: ImageRecord | str) -> bool:
        """Whether the snapshots hold their whiteouts as overlayfs device nodes (False only when
        the kernel refused unprivileged whiteout devices; `materialize` works either way)."""
        return all(info.meta.get("overlay_whiteouts", True) for info in self._snapshot_infos(self._record(image)))

    def materialize(self, image: ImageRecord | str, dest: Path) -> None:
        """Write the image's merged root filesystem into `dest` (created, or empty)."""
        image = self._record(image)
        self.unpack(image)
        materialize(self._snapshot_infos(image), Path(dest))

    def _snapshot_infos(self, image: ImageRecord) -> list[SnapshotInfo]:
        infos = []
        for chain in chain_ids(image.diff_ids):
            try:
                infos.append(self._snapshots.info(chain))
            except SnapshotMissing:
                raise SnapshotMissing(
                    f"layer {chain} of {image.names[0] if image.names else image.short_id} is not unpacked (call unpack)"
                ) from None
        return infos

    def _record(self, image: ImageRecord | str) -> ImageRecord:
        return self.resolve(image) if isinstance(image, str) else image
