"""Real, runnable container images built on disk, for tests that drive third-party clients.

Everything is made here with tarfile, gzip, hashlib and json only (no network, no other tool):
a tiny root filesystem of the static busybox (`/usr/bin/busybox` as `bin/busybox` plus applet
symlinks), then layers that add, modify and delete files (the deletion is an OCI whiteout
`.wh.<name>` entry). Tars and gzip streams are reproducible (fixed mtimes, owners and gzip
header), so the same build gives the same digests.

The images are written as OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/...`),
one tag per image, which skopeo and podman read through the `oci:<dir>:<tag>` transport:

- `OCI_TAG`: OCI manifest, OCI config, tar+gzip layers;
- `DOCKER_TAG`: Docker schema 2 manifest, Docker config and layer media types (skopeo 1.9
  only resolves OCI manifests and indexes by tag in a layout, so this one is also written in
  c/image's `dir:` format, which it reads);
- `MULTI_TAG`: an OCI image index of a linux/amd64 and a linux/arm64 image (they share the
  base layer; each has its own top layer and config).

Each built object knows its bytes and digest, and `Image.filesystem()` is the root filesystem
the layers stack to (whiteouts applied), to compare with what a client unpacked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocispec import mediatypes

BUSYBOX = Path("/usr/bin/busybox")
BUSYBOX_APPLETS = ("sh", "cat", "ls", "echo", "test", "true", "sleep")
MTIME = 1_704_067_200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"
REF_NAME = "org.opencontainers.image.ref.name"
WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"

OCI_TAG = "oci-1.0"
DOCKER_TAG = "docker-1.0"
MULTI_TAG = "multi-1.0"

GREETING_V1 = b"hello from layer 2\n"
GREETING_V2 = b"hello from layer 3, which replaced layer 2's greeting\n"
OBSOLETE = b"this file is deleted by a whiteout in layer 3\n"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def host_architecture() -> str:
    """The GOARCH of this machine, so the single-platform images run here."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def payload(size: int, seed: str) -> bytes:
    """Deterministic incompressible bytes, so some layers are more than a few hundred bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


# -- layers ----------------------------------------------------------------------------------


class LayerBuilder:
    """Writes one reproducible layer tar: root-owned entries with a fixed mtime."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buffer, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, path: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path.strip("/"))
        info.type = kind
        info.mode = mode
        info.mtime = MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def directory(self, path: str, mode: int = 0o755) -> LayerBuilder:
        self._tar.addfile(self._info(path, tarfile.DIRTYPE, mode))
        return self

    def file(self, path: str, data: bytes, mode: int = 0o644) -> LayerBuilder:
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))
        return self

    def symlink(self, path: str, target: str) -> LayerBuilder:
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def whiteout(self, path: str) -> LayerBuilder:
        """Delete `path` (and everything under it) from the layers below."""
        parent, _, base = path.strip("/").rpartition("/")
        name = f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else f"{WHITEOUT_PREFIX}{base}"
        return self.file(name, b"", 0o644)

    def build(self, media_type: str = mediatypes.OCI_LAYER_GZIP) -> Layer:
        self._tar.close()
        return Layer.from_tar(self._buffer.getvalue(), media_type)


@dataclass(frozen=True)
class Layer:
    tar: bytes
    """The uncompressed tar; its sha256 is the layer's diff_id."""
    blob: bytes
    """The gzip-compressed tar as stored in registries; its sha256 is the layer's digest."""
    media_type: str

    @classmethod
    def from_tar(cls, tar: bytes, media_type: str = mediatypes.OCI_LAYER_GZIP) -> Layer:
        # mtime=0 and no file name in the gzip header: the same tar always compresses the same.
        return cls(tar, gzip.compress(tar, compresslevel=6, mtime=0), media_type)

    def as_type(self, media_type: str) -> Layer:
        return Layer(self.tar, self.blob, media_type)

    @property
    def digest(self) -> str:
        return sha256(self.blob)

    @property
    def diff_id(self) -> str:
        return sha256(self.tar)

    @property
    def size(self) -> int:
        return len(self.blob)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def members(self) -> list[tarfile.TarInfo]:
        with tarfile.open(fileobj=io.BytesIO(self.tar)) as archive:
            return archive.getmembers()


def base_layer() -> Layer:
    """The busybox root filesystem: a shell and a few applets, /etc/passwd, /tmp."""
    builder = LayerBuilder().directory("bin").file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in BUSYBOX_APPLETS:
        builder.symlink(f"bin/{applet}", "busybox")
    return (
        builder.directory("etc")
        .file("etc/passwd", PASSWD)
        .file("etc/group", GROUP)
        .directory("root", 0o700)
        .directory("tmp", 0o1777)
        .build()
    )


def app_layer(variant: str) -> Layer:
    """Adds files, one of which the next layer deletes, and one that it replaces."""
    return (
        LayerBuilder()
        .directory("etc")
        .directory("etc/dockyard")
        .file("etc/dockyard/greeting.txt", GREETING_V1)
        .file("etc/dockyard/obsolete.txt", OBSOLETE)
        .file("etc/dockyard/variant", variant.encode() + b"\n")
        .directory("usr")
        .directory("usr/share")
        .directory("usr/share/dockyard")
        .file("usr/share/dockyard/data.bin", payload(192 * 1024, f"data-{variant}"))
        .build()
    )


def update_layer(platform_name: str) -> Layer:
    """Modifies the greeting, deletes obsolete.txt with a whiteout, records the platform."""
    return (
        LayerBuilder()
        .directory("etc")
        .directory("etc/dockyard")
        .file("etc/dockyard/greeting.txt", GREETING_V2)
        .whiteout("etc/dockyard/obsolete.txt")
        .file("etc/dockyard/platform", platform_name.encode() + b"\n")
        .build()
    )


# -- images ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FsEntry:
    kind: str  # "file", "dir" or "symlink"
    data: bytes = b""
    target: str = ""
    mode: int = 0


@dataclass
class Image:
    """One platform's image: config, layers and the manifest that binds them."""

    config: bytes
    layers: list[Layer]
    media_type: str = mediatypes.OCI_MANIFEST
    config_media_type: str = mediatypes.OCI_CONFIG
    platform: dict[str, str] = field(default_factory=dict)

    @property
    def manifest(self) -> bytes:
        document = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": {"mediaType": self.config_media_type, "digest": self.config_digest, "size": len(self.config)},
            "layers": [layer.descriptor() for layer in self.layers],
        }
        # indent=3: no client re-serialises to this, so equal bytes prove byte-exact storage
        return json.dumps(document, indent=3).encode()

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def config_json(self) -> dict[str, Any]:
        return json.loads(self.config)

    @property
    def layer_digests(self) -> list[str]:
        return [layer.digest for layer in self.layers]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest), **extra}

    def blobs(self) -> dict[str, bytes]:
        found = {self.config_digest: self.config, self.digest: self.manifest}
        found.update({layer.digest: layer.blob for layer in self.layers})
        return found

    def filesystem(self) -> dict[str, FsEntry]:
        return flatten(self.layers)


@dataclass
class Index:
    """An OCI image index of several platform images."""

    images: list[Image]
    media_type: str = mediatypes.OCI_INDEX

    @property
    def manifest(self) -> bytes:
        document = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [image.descriptor(platform=image.platform) for image in self.images],
        }
        return json.dumps(document, indent=3).encode()

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest), **extra}

    def blobs(self) -> dict[str, bytes]:
        found = {self.digest: self.manifest}
        for image in self.images:
            found.update(image.blobs())
        return found

    def image_for(self, architecture: str) -> Image:
        return next(image for image in self.images if image.platform["architecture"] == architecture)


def image_config(layers: list[Layer], architecture: str, variant: str, *, cpu_variant: str | None = None) -> bytes:
    """A valid image config: rootfs.diff_ids match the layers, one history entry per layer."""
    steps = [
        "ADD busybox rootfs /",
        f"COPY {variant} files /etc/dockyard/ /usr/share/dockyard/",
        "RUN rewrite greeting; rm /etc/dockyard/obsolete.txt",
    ]
    assert len(steps) == len(layers)
    config: dict[str, Any] = {
        "created": CREATED,
        "author": "dockyard tests",
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "Labels": {"org.dockyard.test.variant": variant},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": CREATED, "created_by": f"/bin/sh -c #(nop) {step}", "comment": "tests/images.py"}
            for step in steps
        ],
    }
    if cpu_variant:
        config["variant"] = cpu_variant
    return json.dumps(config, indent=2, sort_keys=True).encode()


def single_image(docker: bool = False, architecture: str | None = None, variant: str | None = None) -> Image:
    """A three-layer busybox image for this machine, in OCI or Docker schema 2 format."""
    architecture = architecture or host_architecture()
    variant = variant or ("docker" if docker else "oci")
    layer_type = mediatypes.DOCKER_LAYER_GZIP if docker else mediatypes.OCI_LAYER_GZIP
    layers = [layer.as_type(layer_type) for layer in (base_layer(), app_layer(variant), update_layer(f"linux/{architecture}"))]
    return Image(
        config=image_config(layers, architecture, variant),
        layers=layers,
        media_type=mediatypes.DOCKER_MANIFEST if docker else mediatypes.OCI_MANIFEST,
        config_media_type=mediatypes.DOCKER_CONFIG if docker else mediatypes.OCI_CONFIG,
        platform={"architecture": architecture, "os": "linux"},
    )


def multi_platform_index() -> Index:
    """linux/amd64 and linux/arm64/v8 images under one OCI index; the base layer is shared.

    Both carry this machine's busybox (only the metadata differs); the arm64 one is for
    transfer tests, not for running.
    """
    base = base_layer()
    app = app_layer("multi")
    images = []
    for architecture, cpu_variant in (("amd64", None), ("arm64", "v8")):
        layers = [base, app, update_layer(f"linux/{architecture}")]
        platform_fields = {"architecture": architecture, "os": "linux"}
        if cpu_variant:
            platform_fields["variant"] = cpu_variant
        images.append(
            Image(
                config=image_config(layers, architecture, "multi", cpu_variant=cpu_variant),
                layers=layers,
                platform=platform_fields,
            )
        )
    return Index(images)


# -- layouts ---------------------------------------------------------------------------------


@dataclass
class BuiltImages:
    """The three test images: one OCI image layout with a tag each, plus a `dir:` copy of the
    Docker-format image (see `write_dir_image`)."""

    layout: Path
    docker_dir: Path
    oci: Image
    docker: Image
    multi: Index

    def ref(self, tag: str) -> str:
        return f"oci:{self.layout}:{tag}"


def write_layout(directory: Path, tagged: dict[str, Image | Index]) -> Path:
    """An OCI image layout holding each object under its tag (the `ref.name` annotation)."""
    blob_dir = directory / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    entries = []
    for tag, thing in tagged.items():
        for digest, data in thing.blobs().items():
            path = blob_dir / digest.split(":", 1)[1]
            if not path.exists():
                path.write_bytes(data)
        entries.append(thing.descriptor(annotations={REF_NAME: tag}))
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    (directory / "index.json").write_text(json.dumps(index, indent=2))
    return directory


def build_test_images(directory: Path) -> BuiltImages:
    """Writes `directory/layout` (all three tags) and `directory/docker-dir`."""
    images = BuiltImages(
        layout=directory / "layout",
        docker_dir=directory / "docker-dir",
        oci=single_image(docker=False),
        docker=single_image(docker=True),
        multi=multi_platform_index(),
    )
    write_layout(images.layout, {OCI_TAG: images.oci, DOCKER_TAG: images.docker, MULTI_TAG: images.multi})
    write_dir_image(images.docker_dir, images.docker)
    return images


def write_dir_image(directory: Path, image: Image) -> Path:
    """`image` in the layout of c/image's `dir:` transport (version 1.1).

    skopeo 1.9 resolves a tag in an OCI layout only to an OCI manifest or index, so the Docker
    schema 2 image, though written into the layout too, is copied from here.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "version").write_text("Directory Transport Version: 1.1\n")
    (directory / "manifest.json").write_bytes(image.manifest)
    for digest, data in image.blobs().items():
        if digest != image.digest:
            (directory / digest.split(":", 1)[1]).write_bytes(data)
    return directory


def oci_archive(layout: Path, archive: Path) -> Path:
    """The layout as an `oci-archive:` tarball (what `podman save --format oci-archive` makes)."""
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    return archive


# -- reading what clients produce ------------------------------------------------------------


def gunzip(data: bytes) -> bytes:
    return gzip.decompress(data)


def read_layout(directory: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(index.json, {digest: bytes}) of an OCI image layout a client wrote."""
    index = json.loads((directory / "index.json").read_text())
    blobs = {}
    for algorithm_dir in (directory / "blobs").iterdir():
        for blob in algorithm_dir.iterdir():
            blobs[f"{algorithm_dir.name}:{blob.name}"] = blob.read_bytes()
    return index, blobs


def flatten(layers: list[Layer]) -> dict[str, FsEntry]:
    """The filesystem a stack of layers makes, applying whiteouts as the OCI image-spec says."""
    tree: dict[str, FsEntry] = {}
    for layer in layers:
        members = layer.members()
        for member in members:  # whiteouts first: they apply to the layers below only
            parent, _, base = member.name.rpartition("/")
            if base == OPAQUE_WHITEOUT:
                prefix = parent + "/"
                for path in [path for path in tree if path.startswith(prefix)]:
                    del tree[path]
            elif base.startswith(WHITEOUT_PREFIX):
                gone = f"{parent}/{base[len(WHITEOUT_PREFIX):]}" if parent else base[len(WHITEOUT_PREFIX):]
                for path in [path for path in tree if path == gone or path.startswith(gone + "/")]:
                    del tree[path]
        with tarfile.open(fileobj=io.BytesIO(layer.tar)) as archive:
            for member in members:
                if member.name.rpartition("/")[2].startswith(WHITEOUT_PREFIX):
                    continue
                if member.isdir():
                    tree[member.name] = FsEntry("dir", mode=member.mode)
                elif member.issym():
                    tree[member.name] = FsEntry("symlink", target=member.linkname, mode=member.mode)
                elif member.isfile():
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    tree[member.name] = FsEntry("file", extracted.read(), mode=member.mode)
    return tree


def read_tree(root: Path) -> dict[str, FsEntry]:
    """The same shape as `flatten`, read from an unpacked directory."""
    tree: dict[str, FsEntry] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        mode = path.lstat().st_mode & 0o7777
        if path.is_symlink():
            tree[name] = FsEntry("symlink", target=str(path.readlink()), mode=mode)
        elif path.is_dir():
            tree[name] = FsEntry("dir", mode=mode)
        elif path.is_file():
            tree[name] = FsEntry("file", path.read_bytes(), mode=mode)
    return tree

