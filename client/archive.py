"""Docker archives -- the tarballs of `docker save` and `docker load` -- to and from the local store.

`save_archive` writes Docker's classic layout, which `docker load` of every version and
`skopeo copy docker-archive:` both read:

```
<chain-id hex>/VERSION        "1.0"
<chain-id hex>/json           legacy v1 layer metadata (id, parent), for old loaders
<chain-id hex>/layer.tar      the layer UNCOMPRESSED: its sha256 is the config's diff ID
<config hex>.json             the image config, byte for byte (so the image ID survives)
manifest.json                 [{"Config": "<hex>.json", "RepoTags": [...], "Layers": [...]}]
repositories                  {"<repo>": {"<tag>": "<top chain-id hex>"}}
```

Layer directories are named by chain ID (the layer together with everything below it), so a
layer stack that several saved images share is written once.

`load_archive` reads any archive whose `manifest.json` names its configs and layers: Docker's
classic layout, Docker 25's (`blobs/sha256/<hex>`), skopeo's (`<diff id>.tar`, with `layer.tar`
symlinks). Links are followed inside the archive only. Layers may be uncompressed, gzip or
zstd; each one's diff ID is checked against the config. Loaded layers are stored
gzip-compressed under an OCI manifest, so a later push sends compressed layers, as
`docker push` would. A layer the store already holds (same diff ID) is reused, and an image
whose config the store already has keeps its existing manifest.

Streaming: a layer is never held in memory. `save` decompresses the stored blob straight into
the tar; since a tar header carries the size, unknown until the end, the entry's header is
written again afterwards, which is why output goes through a seekable temp file (renamed into
place when complete, so a failed save leaves no half archive). `load` decompresses, hashes and
recompresses a layer into a temp file in the store's `ingest/` directory (named `.tmp-*`, which
the store sweeps if we are killed), then streams it into the store's verified ingest.

This module never talks to a registry and never prints.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from ocispec import mediatypes
from ocispec.image_config import ImageConfig, InvalidImageConfig
from ocispec.reference import DOCKER_HUB, ImageReference

from .errors import ClientError
from .store import ImageRecord, ImageStore
from .store.unpack import LayerStream, open_decompressed

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
COPY_CHUNK = 1024 * 1024
MAX_METADATA = 64 * 1024 * 1024
"""manifest.json and configs are read whole: refuse absurd ones."""
MAX_LINKS = 16
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_LEVEL = 6


class ArchiveError(ClientError):
    """An archive that cannot be read or written; the message names the archive and the entry."""


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


try:
    import zstandard

    _DECOMPRESSION_ERRORS: tuple[type[Exception], ...] = (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError)
except ImportError:  # pragma: no cover - zstandard is a declared dependency
    zstandard = None  # type: ignore[assignment]
    _DECOMPRESSION_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


# -- save ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaveEntry:
    """One image to save and the names (`RepoTags`, e.g. `alpine:latest`) it is saved under."""

    record: ImageRecord
    repo_tags: tuple[str, ...] = ()


class TarWriter:
    """A minimal streaming tar writer (GNU format, root-owned entries, a fixed mtime)."""

    def __init__(self, out: BinaryIO, mtime: int = 0) -> None:
        self.out = out
        self.mtime = mtime

    def _header(self, name: str, kind: bytes, size: int = 0, mode: int = 0o644) -> bytes:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = size
        info.mode = mode
        info.mtime = self.mtime
        info.uid = info.gid = 0
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")

    def directory(self, name: str) -> None:
        self.out.write(self._header(name.rstrip("/") + "/", tarfile.DIRTYPE, mode=0o755))

    def file(self, name: str, data: bytes) -> None:
        self.out.write(self._header(name, tarfile.REGTYPE, len(data)))
        self.out.write(data)
        self._pad(len(data))

    def stream(self, name: str, source: _Readable) -> int:
        """Copy `source` to its end as the file `name`; its size is written into the header after."""
        start = self.out.tell()
        placeholder = self._header(name, tarfile.REGTYPE, 0)
        if len(placeholder) != BLOCK:
            raise ArchiveError(f"tar entry name {name!r} is too long to stream")
        self.out.write(placeholder)
        size = 0
        while chunk := source.read(COPY_CHUNK):
            self.out.write(chunk)
            size += len(chunk)
        self._pad(size)
        end = self.out.tell()
        header = self._header(name, tarfile.REGTYPE, size)
        if len(header) != BLOCK:  # GNU base-256 sizes keep it one block; be sure
            raise ArchiveError(f"cannot write the tar header of {name!r} ({size} bytes)")
        self.out.seek(start)
        self.out.write(header)
        self.out.seek(end)
        return size

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self.out.write(b"\0" * (BLOCK - size % BLOCK))

    def close(self) -> None:
        """The end-of-archive blocks, padded to a whole record as tar does."""
        self.out.write(b"\0" * (2 * BLOCK))
        position = self.out.tell()
        if position % RECORD:
            self.out.write(b"\0" * (RECORD - position % RECORD))


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


def save_archive(store: ImageStore, entries: Iterable[SaveEntry], out: BinaryIO) -> None:
    """Write the docker archive of `entries` to the seekable `out` (see the module docstring).

    Entries for the same image (same config) are merged into one manifest.json entry.
    """
    merged: dict[str, SaveEntry] = {}
    for entry in entries:
        known = merged.get(entry.record.config_digest)
        tags = tuple(dict.fromkeys([*(known.repo_tags if known else ()), *entry.repo_tags]))
        merged[entry.record.config_digest] = SaveEntry(known.record if known else entry.record, tags)

    writer = TarWriter(out)
    written: set[str] = set()
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for entry in merged.values():
        record = entry.record
        config = store.read_blob(record.config_digest)
        chains = [_hex(chain) for chain in record.chain_ids]
        for index, (layer, diff_id, chain) in enumerate(zip(record.layers, record.diff_ids, chains)):
            if chain in written:
                continue
            writer.directory(chain)
            writer.file(f"{chain}/VERSION", b"1.0")
            legacy: dict[str, Any] = {"id": chain, "created": "1970-01-01T00:00:00Z", "container_config": {}}
            if index:
                legacy["parent"] = chains[index - 1]
            writer.file(f"{chain}/json", json.dumps(legacy).encode())
            _write_layer(store, writer, f"{chain}/layer.tar", layer.digest, diff_id)
            written.add(chain)
        config_name = f"{_hex(record.config_digest)}.json"
        writer.file(config_name, config)
        manifest.append(
            {
                "Config": config_name,
                "RepoTags": list(entry.repo_tags) or None,
                "Layers": [f"{chain}/layer.tar" for chain in chains],
            }
        )
        for name in entry.repo_tags:
            repository, _, tag = name.rpartition(":")
            if chains and repository:
                repositories.setdefault(repository, {})[tag] = chains[-1]
    writer.file("manifest.json", json.dumps(manifest).encode())
    if repositories:
        writer.file("repositories", json.dumps(repositories).encode())
    writer.close()


def _write_layer(store: ImageStore, writer: TarWriter, name: str, digest: str, diff_id: str) -> None:
    """The stored (maybe compressed) layer blob, decompressed into the tar and both digests checked."""
    with open(store.blob_path(digest), "rb") as raw:
        try:
            stream = LayerStream(raw, digest, diff_id)
            writer.stream(name, stream.tar)
            stream.finish()
        except _DECOMPRESSION_ERRORS as error:
            raise ArchiveError(f"layer {digest} in the store cannot be decompressed: {error}") from None


def save_to_file(store: ImageStore, entries: Iterable[SaveEntry], path: Path) -> None:
    """`save_archive` into `path`, atomically: a temp file beside it, renamed when complete."""
    path = Path(path)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            save_archive(store, entries, handle)  # type: ignore[arg-type]
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def save_to_stream(store: ImageStore, entries: Iterable[SaveEntry], out: BinaryIO) -> None:
    """`save_archive` to a stream that cannot seek (stdout), through an unnamed temp file."""
    with tempfile.TemporaryFile() as spool:
        save_archive(store, entries, spool)  # type: ignore[arg-type]
        spool.seek(0)
        while chunk := spool.read(COPY_CHUNK):
            out.write(chunk)
        out.flush()


# -- load ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedImage:
    image_id: str
    """The config digest."""
    repo_tags: tuple[str, ...]
    """The archive's `RepoTags`, as written there (e.g. `alpine:latest`)."""


class _Archive:
    """The members of an open tar, found by path with links followed inside the archive."""

    def __init__(self, tar: tarfile.TarFile, label: str) -> None:
        self.tar = tar
        self.label = label
        self.members = {_clean(member.name): member for member in tar.getmembers()}

    def member(self, path: str) -> tarfile.TarInfo:
        name = _clean(path)
        for _ in range(MAX_LINKS):
            member = self.members.get(name)
            if member is None:
                raise ArchiveError(f"{self.label} has no {path!r}")
            if member.issym():
                name = _clean(posixpath.join(posixpath.dirname(name), member.linkname))
            elif member.islnk():
                name = _clean(member.linkname)
            elif member.isfile():
                return member
            else:
                raise ArchiveError(f"{self.label}: {path!r} is not a file")
        raise ArchiveError(f"{self.label}: {path!r} is a chain of more than {MAX_LINKS} links")

    def open(self, path: str) -> IO[bytes]:
        handle = self.tar.extractfile(self.member(path))
        if handle is None:
            raise ArchiveError(f"{self.label}: {path!r} is not a file")
        return handle

    def read(self, path: str) -> bytes:
        member = self.member(path)
        if member.size > MAX_METADATA:
            raise ArchiveError(f"{self.label}: {path!r} is {member.size} bytes, too large for metadata")
        with self.open(path) as handle:
            return handle.read()

    def json(self, path: str) -> Any:
        try:
            return json.loads(self.read(path))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ArchiveError(f"{self.label}: {path!r} is not valid JSON: {error}") from None


def _clean(path: str) -> str:
    """An archive path normalised and kept inside the archive (`..` cannot climb out)."""
    return posixpath.normpath("/" + path).lstrip("/")


def load_archive(
    store: ImageStore, source: Path | BinaryIO, *, label: str | None = None, default_registry: str = DOCKER_HUB
) -> list[LoadedImage]:
    """Load every image of the docker archive `source` (a path, or a seekable binary stream)."""
    label = label or str(source)
    try:
        if isinstance(source, Path):
            tar = tarfile.open(source, mode="r:*")
        else:
            tar = tarfile.open(fileobj=source, mode="r:*")
    except tarfile.TarError:
        raise ArchiveError(f"{label} is not a tar archive (plain, gzip, bzip2 or xz)") from None
    with tar:
        try:
            archive = _Archive(tar, label)
        except tarfile.TarError as error:
            raise ArchiveError(f"{label} is not a valid tar archive: {error}") from None
        if "manifest.json" not in archive.members:
            raise ArchiveError(f"{label} has no manifest.json: it is not a docker archive (docker save / skopeo docker-archive:)")
        manifest = archive.json("manifest.json")
        if not isinstance(manifest, list) or not all(isinstance(entry, dict) for entry in manifest):
            raise ArchiveError(f"{label}: manifest.json must be a list of objects")
        known = _stored_layers(store)
        return [_load_image(store, archive, entry, known, default_registry) for entry in manifest]


def load_from_stream(
    store: ImageStore, stream: BinaryIO, *, label: str = "stdin", default_registry: str = DOCKER_HUB
) -> list[LoadedImage]:
    """`load_archive` of a stream that cannot seek (stdin), spooled to an unnamed temp file first."""
    with tempfile.TemporaryFile() as spool:
        while chunk := stream.read(COPY_CHUNK):
            spool.write(chunk)
        spool.seek(0)
        return load_archive(store, spool, label=label, default_registry=default_registry)  # type: ignore[arg-type]


def _stored_layers(store: ImageStore) -> dict[str, dict[str, Any]]:
    """diff ID -> an OCI layer descriptor of a blob the store already holds."""
    known: dict[str, dict[str, Any]] = {}
    for record in store.images():
        for layer, diff_id in zip(record.layers, record.diff_ids):
            media_type = _oci_layer_type(layer.media_type)
            if diff_id not in known and media_type is not None:
                known[diff_id] = {"mediaType": media_type, "digest": layer.digest, "size": layer.size}
    return known


def _oci_layer_type(media_type: str) -> str | None:
    if media_type.endswith("gzip"):
        return mediatypes.OCI_LAYER_GZIP
    if media_type.endswith("zstd"):
        return mediatypes.OCI_LAYER_ZSTD
    if media_type.endswith(".tar"):
        return mediatypes.OCI_LAYER_TAR
    return None


def _load_image(
    store: ImageStore, archive: _Archive, entry: dict[str, Any], known: dict[str, dict[str, Any]], default_registry: str
) -> LoadedImage:
    config_path, layer_paths, tags = entry.get("Config"), entry.get("Layers") or [], entry.get("RepoTags") or []
    if not isinstance(config_path, str) or not isinstance(layer_paths, list) or not isinstance(tags, list):
        raise ArchiveError(f"{archive.label}: a manifest.json entry needs Config (a path), Layers and RepoTags (lists)")
    names = [str(ImageReference.parse(str(tag), default_registry=default_registry)) for tag in tags]
    config = archive.read(config_path)
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    try:
        diff_ids = ImageConfig.parse(config).diff_ids()
    except InvalidImageConfig as error:
        raise ArchiveError(f"{archive.label}: config {config_path!r} has no rootfs.diff_ids: {error}") from None
    if len(diff_ids) != len(layer_paths):
        raise ArchiveError(
            f"{archive.label}: config {config_path!r} lists {len(diff_ids)} diff IDs but manifest.json {len(layer_paths)} layers"
        )
    existing = [record for record in store.images() if record.config_digest == config_digest]
    if existing:
        manifest_digest = max(existing, key=lambda record: (bool(record.names), record.added or "")).manifest_digest
    else:
        descriptors = []
        for path, diff_id in zip(layer_paths, diff_ids):
            descriptor = known.get(diff_id)
            if descriptor is None or not store.has_blob(descriptor["digest"]):
                descriptor = _import_layer(store, archive, str(path), str(diff_id))
                known[diff_id] = descriptor
            descriptors.append(descriptor)
        store.write_blob(config, config_digest)
        manifest = {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": descriptors,
        }
        manifest_digest = store.write_blob(json.dumps(manifest, indent=2).encode())
    if not names and not existing:
        store.add_image(None, manifest_digest)  # untagged, as docker load keeps it: listed as <none>
    for name in names:
        store.add_image(name, manifest_digest)
    return LoadedImage(config_digest, tuple(str(tag) for tag in tags))


class _HashingWriter:
    """Writes through to `target`, hashing and counting every byte."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def _decompressed(raw: IO[bytes]) -> _Readable:
    """The uncompressed bytes of `raw`, whether it is gzip, zstd or a plain tar."""
    return open_decompressed(raw)[1]


def _ingest_dir(store: ImageStore) -> Path | None:
    directory = store.root / "ingest"
    return directory if directory.is_dir() else None


def _import_layer(store: ImageStore, archive: _Archive, path: str, diff_id: str) -> dict[str, Any]:
    """Store the archive's layer `path` gzip-compressed, checking its diff ID; its descriptor."""

    def fill(out: IO[bytes]) -> None:
        with archive.open(path) as raw:
            try:
                source = _decompressed(raw)
                while chunk := source.read(COPY_CHUNK):
                    out.write(chunk)
            except _DECOMPRESSION_ERRORS as error:
                raise ArchiveError(f"{archive.label}: layer {path!r} cannot be decompressed: {error}") from None

    def check(actual: str) -> None:
        if actual != diff_id:
            raise ArchiveError(
                f"{archive.label}: layer {path!r} hashes to {actual}, but the config's rootfs.diff_ids says {diff_id}"
            )

    descriptor, _ = store_gzip_layer(store, fill, check=check)
    return descriptor


def store_gzip_layer(
    store: ImageStore, fill: Callable[[IO[bytes]], None], *, check: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], str]:
    """Store what `fill` writes (an uncompressed layer tar) as a gzip layer blob, streaming:
    hashed (the diff ID) and compressed (the digest) on the way to a spool file in the store's
    `ingest/`, then into the store's verified ingest. `check(diff_id)` may refuse it before it
    is stored. Returns (the layer's OCI descriptor, its diff ID)."""
    with tempfile.NamedTemporaryFile(dir=_ingest_dir(store), prefix=".tmp-layer-") as spool:
        compressed = _HashingWriter(spool)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as packer:  # type: ignore[arg-type]
            plain = _HashingWriter(packer)  # type: ignore[arg-type]
            fill(plain)  # type: ignore[arg-type]
        diff_id = "sha256:" + plain.hasher.hexdigest()
        if check is not None:
            check(diff_id)
        digest = "sha256:" + compressed.hasher.hexdigest()
        with store.ingest(digest, compressed.size) as ingest:
            if not ingest.exists:
                spool.seek(ingest.offset)
                while chunk := spool.read(COPY_CHUNK):
                    ingest.write(chunk)
                ingest.commit()
    return {"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": digest, "size": compressed.size}, diff_id
