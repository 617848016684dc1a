"""Which images the store holds and under which names: `dockyard.json`, mirrored into `index.json`.

`dockyard.json` is the store's own metadata and the only source of truth: one record per image
manifest (keyed by its digest) with its names, config digest (the IMAGE ID), created time,
layers and diff_ids. Every change happens under the store-wide lock (`lock`): read, change,
write atomically (temp, fsync, rename), then regenerate `index.json` -- the OCI image-layout
view, one descriptor per name with `org.opencontainers.image.ref.name` = the full name
(`localhost:5000/acme/app:1.0`, which `skopeo copy oci:<store>:<name>` accepts), plus one
unnamed descriptor per dangling image so layout tools see its blobs as referenced. Readers
take no lock: they see the old file or the new one.

Names are normalised full references: `host/repo:tag` or `host/repo@sha256:<hex>` (a
`host/repo:tag@digest` is kept as `host/repo@digest`, as Docker does). A name points at exactly
one image; moving it (`tag`, or adding a newer image under it) leaves the old image dangling,
listed with no names until removed by ID.

Deletion rule (`plan_removal`): a blob or snapshot goes only when no remaining record
references it, decided under the store lock. `add_image` re-checks under the same lock that all
of its blobs are present, so an image is never recorded over a blob a concurrent `rmi` deleted;
it then raises BlobNotFound and the caller fetches the blob again.

This module performs no unpacking and never deletes files itself: it says what to delete.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ocispec import mediatypes
from ocispec.digest import Digest, InvalidDigest
from ocispec.image_config import ImageConfig, InvalidImageConfig
from ocispec.manifest import Descriptor, ImageManifest
from ocispec.names import InvalidName, familiar, validate_repository

from .errors import (
    AmbiguousReference,
    ImageConflict,
    InvalidImage,
    InvalidStoreReference,
    NoSuchImage,
    StoreError,
)
from .files import atomic_write
from .locks import FileLock
from .unpack import chain_ids

REF_NAME = "org.opencontainers.image.ref.name"
METADATA_VERSION = 1
IMAGE_CONFIG_TYPES = frozenset({mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG})

_NAME = re.compile(
    r"^(?P<repo>[^\s@]+?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>[^\s@]+))?$"
)
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?$")
_ID_PREFIX = re.compile(r"^[0-9a-f]{1,64}$")


# -- names ---------------------------------------------------------------------------------------


def normalize_name(text: str) -> str:
    """`host/repo:tag` or `host/repo@digest`, validated; InvalidStoreReference otherwise."""
    match = _NAME.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise InvalidStoreReference(f"invalid image name {text!r}: expected host/repository:tag or host/repository@digest")
    repo, tag, digest = match.group("repo", "tag", "digest")
    host, slash, path = repo.partition("/")
    if not slash or not _HOST.match(host):
        raise InvalidStoreReference(f"invalid image name {text!r}: the store keeps full names, host/repository[:tag]")
    try:
        validate_repository(path)
    except InvalidName as error:
        raise InvalidStoreReference(f"invalid image name {text!r}: {error}") from None
    if digest is not None:
        try:
            Digest.parse(digest)
        except InvalidDigest as error:
            raise InvalidStoreReference(f"invalid image name {text!r}: {error}") from None
        return f"{repo}@{digest}"
    if tag is None:
        raise InvalidStoreReference(f"invalid image name {text!r}: a tag or digest is required")
    return f"{repo}:{tag}"


def repository_of(name: str) -> str:
    """`host/repo` of a normalised name."""
    if "@" in name:
        return name.split("@", 1)[0]
    return name.rsplit(":", 1)[0]


def is_digest_name(name: str) -> bool:
    return "@" in name


def is_single_reference(names: list[str]) -> bool:
    """Docker's rule for `rmi <ID>` without force: at most one tag, and every digest name in
    that tag's repository."""
    if len(names) <= 1:
        return len(names) == 1
    tags = [name for name in names if not is_digest_name(name)]
    if len(tags) > 1:
        return False
    single = tags[0] if tags else names[0]
    digest_repos = {repository_of(name) for name in names if is_digest_name(name)}
    return len(digest_repos) == 1 and repository_of(single) in digest_repos


# -- records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRecord:
    """One image in the store (one image manifest), as `images()` lists it."""

    names: tuple[str, ...]
    """Full names pointing at it (`host/repo:tag`, `host/repo@sha256:...`); empty when dangling."""
    manifest_digest: str
    config_digest: str
    """The IMAGE ID."""
    media_type: str
    """The manifest's media type (OCI or Docker schema 2)."""
    created: str | None
    """The config's `created` (RFC 3339 text), if any."""
    size: int
    """Sum of the layer blob sizes (compressed, as in the manifest)."""
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    manifest_size: int = 0
    index_digest: str | None = None
    """The image index it was selected from, when pulled through one."""
    added: str | None = None
    parent: str | None = None
    """The image ID this one was committed or built on (local metadata, as Docker keeps it)."""

    def __hash__(self) -> int:  # the layer descriptors (pydantic models) are not hashable
        return hash((self.manifest_digest, self.names))

    @property
    def id(self) -> str:
        return self.config_digest

    @property
    def short_id(self) -> str:
        return self.config_digest.split(":", 1)[1][:12]

    @property
    def repo_tags(self) -> list[str]:
        return [name for name in self.names if not is_digest_name(name)]

    @property
    def repo_digests(self) -> list[str]:
        return [name for name in self.names if is_digest_name(name)]

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def created_at(self) -> datetime | None:
        """`created` parsed (fractional seconds cut to microseconds), or None."""
        if not self.created:
            return None
        text = re.sub(r"(\.\d{6})\d+", r"\1", self.created.replace("Z", "+00:00"))
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "manifest_digest": self.manifest_digest,
            "manifest_size": self.manifest_size,
            "media_type": self.media_type,
            "config_digest": self.config_digest,
            "index_digest": self.index_digest,
            "created": self.created,
            "size": self.size,
            "layers": [layer.model_dump(by_alias=True, exclude_none=True) for layer in self.layers],
            "diff_ids": list(self.diff_ids),
            "added": self.added,
            "parent": self.parent,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRecord:
        return cls(
            names=tuple(data["names"]),
            manifest_digest=data["manifest_digest"],
            manifest_size=data.get("manifest_size", 0),
            media_type=data["media_type"],
            config_digest=data["config_digest"],
            index_digest=data.get("index_digest"),
            created=data.get("created"),
            size=data["size"],
            layers=tuple(Descriptor.model_validate(layer) for layer in data["layers"]),
            diff_ids=tuple(data["diff_ids"]),
            added=data.get("added"),
            parent=data.get("parent"),
        )

    def blobs(self) -> set[str]:
        found = {self.manifest_digest, self.config_digest, *(layer.digest for layer in self.layers)}
        if self.index_digest:
            found.add(self.index_digest)
        return found


@dataclass(frozen=True)
class RemovalReport:
    """What `rmi` did, in the order Docker prints it.

    `untagged`: names removed. `deleted`: the image ID (config digest) when the image itself
    went, then the layer blob digests freed, top layer first -- only what no other image still
    uses. (The manifest and index blobs freed with them are deleted too but, as in Docker's
    output, not listed.)
    """

    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def record_from_blobs(
    name: str, manifest_digest: str, read_blob: Callable[[str], bytes], *, index_digest: str | None, added: str
) -> ImageRecord:
    """Validate an image manifest and its config (read with `read_blob`); the record they make."""
    manifest_bytes = read_blob(manifest_digest)
    try:
        document = json.loads(manifest_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidImage(f"manifest {manifest_digest} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidImage(f"manifest {manifest_digest} is not a JSON object")
    media_type = document.get("mediaType")
    if media_type in mediatypes.INDEXES or "manifests" in document:
        raise InvalidImage(
            f"manifest {manifest_digest} is an image index: add the manifest of one platform (and pass index_digest)"
        )
    try:
        manifest = ImageManifest.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "manifest"
        raise InvalidImage(f"manifest {manifest_digest} is not an image manifest: {where}: {first['msg']}") from None
    if media_type is None:
        media_type = mediatypes.DOCKER_MANIFEST if manifest.config.media_type == mediatypes.DOCKER_CONFIG else mediatypes.OCI_MANIFEST
    if media_type not in mediatypes.IMAGE_MANIFESTS:
        raise InvalidImage(f"manifest {manifest_digest} has the unsupported media type {media_type!r}")
    if manifest.config.media_type not in IMAGE_CONFIG_TYPES:
        raise InvalidImage(
            f"{name} is not a container image: its config has media type {manifest.config.media_type!r}"
        )
    config_bytes = read_blob(manifest.config.digest)
    try:
        config = ImageConfig.parse(config_bytes)
        diff_ids = config.diff_ids()
    except InvalidImageConfig as error:
        raise InvalidImage(f"config {manifest.config.digest} of {name} has no valid rootfs.diff_ids: {error}") from None
    if len(diff_ids) != len(manifest.layers):
        raise InvalidImage(
            f"{name}: the manifest lists {len(manifest.layers)} layers but the config's rootfs.diff_ids has {len(diff_ids)}"
        )
    created = config.created or None
    return ImageRecord(
        names=(name,),
        manifest_digest=manifest_digest,
        manifest_size=len(manifest_bytes),
        media_type=media_type,
        config_digest=manifest.config.digest,
        index_digest=index_digest,
        created=created,
        size=sum(layer.size for layer in manifest.layers),
        layers=tuple(manifest.layers),
        diff_ids=tuple(diff_ids),
        added=added,
    )


def check_index_lists(index_bytes: bytes, index_digest: str, manifest_digest: str) -> None:
    try:
        document = json.loads(index_bytes)
        digests = {entry["digest"] for entry in document["manifests"]}
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidImage(f"index {index_digest} is not an image index: {error}") from None
    if manifest_digest not in digests:
        raise InvalidImage(f"index {index_digest} does not list the manifest {manifest_digest}")


# -- the metadata file ---------------------------------------------------------------------------

State = dict[str, ImageRecord]
"""manifest digest -> record"""


class Catalog:
    """`dockyard.json` (truth), `index.json` (the OCI layout view) and the store lock."""

    def __init__(self, root: Path) -> None:
        self.path = root / "dockyard.json"
        self.index_path = root / "index.json"
        self.lock_path = root / "lock"

    def load(self) -> State:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        if data.get("version") != METADATA_VERSION:
            raise StoreError(f"{self.path} has metadata version {data.get('version')!r}; this dockyard reads {METADATA_VERSION}")
        return {key: ImageRecord.from_json(value) for key, value in data["images"].items()}

    @contextmanager
    def locked(self) -> Iterator[State]:
        """The state, under the store lock; call `save` inside to commit a change."""
        with FileLock(self.lock_path):
            yield self.load()

    def save(self, state: State) -> None:
        document = {"version": METADATA_VERSION, "images": {key: record.to_json() for key, record in state.items()}}
        atomic_write(self.path, json.dumps(document, indent=2).encode())
        atomic_write(self.index_path, render_index(state))


def empty_index() -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []}, indent=2).encode()


def render_index(state: State) -> bytes:
    manifests = []
    for record in sorted(state.values(), key=lambda r: (r.added or "", r.manifest_digest)):
        descriptor = {"mediaType": record.media_type, "digest": record.manifest_digest, "size": record.manifest_size}
        if not record.names:
            manifests.append(descriptor)
        for name in sorted(record.names):
            manifests.append({**descriptor, "annotations": {REF_NAME: name}})
    return json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests}, indent=2).encode()


# -- lookups and removal plans (pure functions of the state) -------------------------------------


@dataclass(frozen=True)
class Match:
    key: str
    """The manifest digest of the record found."""
    name: str | None
    """The exact name matched, when the reference was one of the record's names."""


def find(state: State, reference: str) -> Match:
    """The record `reference` means: its manifest digest, a name, `host/repo@digest` of a
    record in that repository, or a full or short image ID (`sha256:<hex>` or a hex prefix)."""
    text = reference.strip() if isinstance(reference, str) else ""
    if text in state:  # a record's key: its manifest digest
        return Match(text, None)
    for key, record in state.items():
        if text in record.names:
            return Match(key, text)
    try:
        name: str | None = normalize_name(text)
    except InvalidStoreReference:
        name = None
    if name is not None:
        for key, record in state.items():
            if name in record.names:
                return Match(key, name)
        if is_digest_name(name):
            repo, digest = name.split("@", 1)
            for key, record in sorted(state.items(), key=lambda item: item[1].added or "", reverse=True):
                if digest in (record.manifest_digest, record.index_digest) and any(
                    repository_of(n) == repo for n in record.names
                ):
                    return Match(key, None)
    prefix = text[len("sha256:") :] if text.startswith("sha256:") else text
    if _ID_PREFIX.match(prefix) and (text.startswith("sha256:") or "/" not in text):
        ids = {record.config_digest for record in state.values() if record.config_digest.split(":", 1)[1].startswith(prefix)}
        if len(ids) > 1:
            raise AmbiguousReference(f"image ID prefix {reference!r} matches {len(ids)} images: use more characters")
        if ids:
            (image_id,) = ids
            candidates = [(key, record) for key, record in state.items() if record.config_digest == image_id]
            candidates.sort(key=lambda item: (bool(item[1].names), item[1].added or ""), reverse=True)
            return Match(candidates[0][0], None)
    raise NoSuchImage(f"No such image: {reference}")


@dataclass(frozen=True)
class Hold:
    """A container that uses an image (see `ImageStore.hold`)."""

    holder: str
    """The container ID."""
    image: str
    """The image ID (config digest) it was created from."""
    running: bool = False


@dataclass
class RemovalPlan:
    report: RemovalReport
    state: State
    """What the state becomes."""
    blobs: list[str]
    """Every blob to delete (the report's plus manifests and indexes)."""
    chains: list[str]
    """Snapshots (chain IDs) to delete."""


def _conflict(state: State, record: ImageRecord, holds: list[Hold], *, force: bool) -> str | None:
    """Why the image `record` may not be deleted (Docker's hard and, unless forced, soft conflicts)."""
    short_id = record.short_id
    if any(other.parent == record.config_digest for other in state.values()):
        return f"conflict: unable to delete {short_id} (cannot be forced) - image has dependent child images"
    users = [hold for hold in holds if hold.image == record.config_digest]
    running = [hold for hold in users if hold.running]
    if running:
        return f"conflict: unable to delete {short_id} (cannot be forced) - image is being used by running container {running[0].holder[:12]}"
    if users and not force:
        return f"conflict: unable to delete {short_id} (must be forced) - image is being used by stopped container {users[0].holder[:12]}"
    return None


def plan_removal(state: State, reference: str, *, force: bool = False, holds: list[Hold] | None = None) -> RemovalPlan:
    """What `rmi reference` does, as Docker does it (see `RemovalReport`).

    Containers (`holds`) and child images keep an image: untagging its last name then leaves it
    dangling (Docker's quiet delete), and removing it by ID is a conflict. An image a container
    uses is never deleted, even with `force` (Docker would delete a stopped container's image and
    keep its layers; we keep the image, untagged, so the container stays committable).
    """
    holds = holds or []
    match = find(state, reference)
    state = dict(state)
    record = state[match.key]
    untagged: list[str] = []
    doomed: list[str] = []
    if match.name is not None:
        if not force and is_single_reference(list(record.names)):
            user = next((hold for hold in holds if hold.image == record.config_digest), None)
            if user is not None:
                raise ImageConflict(
                    f'conflict: unable to remove repository reference "{familiar(match.name)}" (must force) - '
                    f"container {user.holder[:12]} is using its referenced image {record.short_id}"
                )
        names = [name for name in record.names if name != match.name]
        untagged.append(match.name)
        if not is_digest_name(match.name):
            # The last tag of a repository takes that repository's digest names with it.
            repo = repository_of(match.name)
            if not any(not is_digest_name(n) and repository_of(n) == repo for n in names):
                untagged += [n for n in names if is_digest_name(n) and repository_of(n) == repo]
                names = [n for n in names if not (is_digest_name(n) and repository_of(n) == repo)]
        state[match.key] = record = _with_names(record, names)
        if not names and _conflict(state, record, holds, force=True) is None:
            doomed.append(match.key)
    else:
        same_image = [key for key, other in state.items() if other.config_digest == record.config_digest]
        names = sorted({name for key in same_image for name in state[key].names})
        if names and not force and not is_single_reference(names):
            raise ImageConflict(
                f"conflict: unable to delete {record.short_id} (must be forced) - image is referenced in multiple repositories"
            )
        conflict = _conflict(state, record, holds, force=force)
        if conflict is not None:
            raise ImageConflict(conflict)
        held = any(hold.image == record.config_digest for hold in holds)  # by stopped containers, forced
        untagged += names
        for key in same_image:
            state[key] = _with_names(state[key], [])
        if not held:
            doomed += same_image
    doomed += _dangling_parents(state, doomed, holds)
    gone = [state.pop(key) for key in doomed]
    kept_blobs = {digest for other in state.values() for digest in other.blobs()}
    kept_chains = {chain for other in state.values() for chain in other.chain_ids}
    deleted: list[str] = []
    blobs: list[str] = []
    for image in gone:
        if image.config_digest not in kept_blobs and image.config_digest not in deleted:
            deleted.append(image.config_digest)
    for image in gone:
        for layer in reversed(image.layers):
            if layer.digest not in kept_blobs and layer.digest not in deleted:
                deleted.append(layer.digest)
    blobs += deleted
    for image in gone:
        for digest in (image.manifest_digest, image.index_digest):
            if digest and digest not in kept_blobs and digest not in blobs:
                blobs.append(digest)
    chains = []
    for image in gone:
        for chain in image.chain_ids:
            if chain not in kept_chains and chain not in chains:
                chains.append(chain)
    return RemovalPlan(RemovalReport(untagged, deleted), state, blobs, chains)


def _dangling_parents(state: State, doomed: list[str], holds: list[Hold]) -> list[str]:
    """Parents left with no name, no other child and no container once `doomed` go (Docker
    deletes them with their last child)."""
    going = set(doomed)
    more: list[str] = []
    queue = [state[key].parent for key in doomed if state[key].parent]
    while queue:
        parent_id = queue.pop()
        for key, record in state.items():
            if key in going or record.config_digest != parent_id or record.names:
                continue
            children = [k for k, other in state.items() if other.parent == parent_id and k not in going]
            if children or any(hold.image == parent_id for hold in holds):
                continue
            going.add(key)
            more.append(key)
            if record.parent:
                queue.append(record.parent)
    return more


def _with_names(record: ImageRecord, names: list[str]) -> ImageRecord:
    return replace(record, names=tuple(names))


def with_name(state: State, key: str, name: str, *, index_digest: str | None = None) -> State:
    """`name` moved onto record `key` (off any other record, which may become dangling)."""
    state = dict(state)
    for other_key, other in state.items():
        if other_key != key and name in other.names:
            state[other_key] = _with_names(other, [n for n in other.names if n != name])
    record = state[key]
    names = list(record.names) if name in record.names else [*record.names, name]
    record = _with_names(record, names)
    if index_digest is not None and index_digest != record.index_digest:
        record = replace(record, index_digest=index_digest)
    state[key] = record
    return state
