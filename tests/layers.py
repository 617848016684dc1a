"""Layer tars of any shape (hostile ones included) and images made of them, for the store tests.

`Tar` writes entries exactly as given -- absolute names, `..`, links anywhere, devices -- which
`tests/images.py`'s reproducible builder (busybox images) deliberately does not. `make_image`
turns tars into a config + manifest with the chosen compression, and `put_image` writes its
blobs into an `ImageStore` and records it under a name. The `*_worker` functions run in child
processes (multiprocessing "spawn"), so they live in an importable module.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from client.store import ImageRecord, ImageStore
from ocispec import mediatypes

MTIME = 1_704_067_200  # 2024-01-01T00:00:00Z
MEDIA_TYPES = {
    "gzip": mediatypes.OCI_LAYER_GZIP,
    "zstd": mediatypes.OCI_LAYER_ZSTD,
    "none": mediatypes.OCI_LAYER_TAR,
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Tar:
    """A layer tar, entry by entry, with nothing normalised."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buffer, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, mtime: int = MTIME) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = mtime
        info.uid, info.gid = uid, gid
        return info

    def dir(self, name: str, mode: int = 0o755, **kw: Any) -> Tar:
        self._tar.addfile(self._info(name, tarfile.DIRTYPE, mode, **kw))
        return self

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, **kw: Any) -> Tar:
        info = self._info(name, tarfile.REGTYPE, mode, **kw)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))
        return self

    def symlink(self, name: str, target: str, **kw: Any) -> Tar:
        info = self._info(name, tarfile.SYMTYPE, 0o777, **kw)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def hardlink(self, name: str, target: str, **kw: Any) -> Tar:
        info = self._info(name, tarfile.LNKTYPE, 0o644, **kw)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def device(self, name: str, major: int, minor: int, char: bool = True, mode: int = 0o666) -> Tar:
        info = self._info(name, tarfile.CHRTYPE if char else tarfile.BLKTYPE, mode)
        info.devmajor, info.devminor = major, minor
        self._tar.addfile(info)
        return self

    def fifo(self, name: str, mode: int = 0o644) -> Tar:
        self._tar.addfile(self._info(name, tarfile.FIFOTYPE, mode))
        return self

    def whiteout(self, path: str) -> Tar:
        parent, _, base = path.rpartition("/")
        return self.file(f"{parent}/.wh.{base}" if parent else f".wh.{base}")

    def opaque(self, directory: str) -> Tar:
        return self.file(f"{directory}/.wh..wh..opq")

    def build(self) -> bytes:
        self._tar.close()
        return self._buffer.getvalue()


def compress(tar: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(tar, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(tar)
    return tar


@dataclass
class BuiltImage:
    manifest: bytes
    config: bytes
    layers: list[bytes]
    """Layer blobs as stored (compressed)."""
    tars: list[bytes]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def layer_digests(self) -> list[str]:
        return [sha256(blob) for blob in self.layers]

    def blobs(self) -> dict[str, bytes]:
        found = {sha256(blob): blob for blob in self.layers}
        found[self.config_digest] = self.config
        found[self.digest] = self.manifest
        return found


def make_image(
    tars: list[bytes],
    compression: str = "gzip",
    *,
    label: str = "",
    diff_ids: list[str] | None = None,
    created: str = "2024-01-01T00:00:00Z",
) -> BuiltImage:
    """An OCI image of `tars` (lowest first); `label` makes configs of equal layers differ."""
    blobs = [compress(tar, compression) for tar in tars]
    config = json.dumps(
        {
            "created": created,
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"test": label}} if label else {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids if diff_ids is not None else [sha256(t) for t in tars]},
            "history": [{"created": created, "created_by": f"layer {i}"} for i in range(len(tars))],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [
                {"mediaType": MEDIA_TYPES[compression], "digest": sha256(blob), "size": len(blob)} for blob in blobs
            ],
        }
    ).encode()
    return BuiltImage(manifest, config, blobs, tars)


def put_image(store: ImageStore, name: str, image: BuiltImage) -> ImageRecord:
    """Write the image's blobs (layers streamed through `ingest`, the rest with write_blob) and add it."""
    for digest, data in image.blobs().items():
        if digest in image.layer_digests:
            with store.ingest(digest, len(data)) as ingest:
                for start in range(ingest.offset, len(data), 64 * 1024):
                    ingest.write(data[start : start + 64 * 1024])
                ingest.commit()
        else:
            store.write_blob(data, digest)
    return store.add_image(name, image.digest)


def base_tar() -> bytes:
    return (
        Tar()
        .dir("etc")
        .file("etc/os-release", b"NAME=dockyard-test\n")
        .dir("bin")
        .file("bin/tool", b"#!/bin/sh\necho tool\n", 0o755)
        .symlink("bin/alias", "tool")
        .build()
    )


def app_tar(name: str, files: int = 3) -> bytes:
    tar = Tar().dir("app")
    for index in range(files):
        tar.file(f"app/{name}-{index}.txt", f"{name} {index}\n".encode())
    return tar.build()


def many_files_tar(files: int, size: int = 4096) -> bytes:
    """A layer slow enough to unpack that a test can kill the process in the middle."""
    tar = Tar().dir("data")
    for directory in range(files // 100 + 1):
        tar.dir(f"data/{directory:03d}")
    for index in range(files):
        tar.file(f"data/{index // 100:03d}/{index:05d}.bin", hashlib.sha256(str(index).encode()).digest() * (size // 32))
    return tar.build()


# -- child processes -------------------------------------------------------------------------------


@dataclass
class WorkerResult:
    index: int
    names: list[str] = field(default_factory=list)
    unpacked: list[str] = field(default_factory=list)
    error: str | None = None


def concurrent_worker(root: str, index: int, rounds: int) -> WorkerResult:
    """Adds images sharing the base layer, fights over one shared tag, unpacks and materializes."""
    result = WorkerResult(index)
    try:
        store = ImageStore(Path(root))
        for round_ in range(rounds):
            image = make_image([base_tar(), app_tar(f"w{index}r{round_}")], label=f"{index}-{round_}")
            name = f"localhost:5000/acme/w{index}:r{round_}"
            record = put_image(store, name, image)
            store.tag(name, "localhost:5000/acme/shared:latest")
            dirs = store.unpack(record)
            result.names.append(name)
            result.unpacked += [str(d) for d in dirs]
            dest = Path(root).parent / f"merged-{index}-{round_}"
            store.materialize(record, dest)
            assert (dest / f"app/w{index}r{round_}-0.txt").read_text() == f"w{index}r{round_} 0\n"
            assert (dest / "bin/tool").is_file()
    except Exception as error:  # reported to the parent, which fails the test with it
        result.error = f"{type(error).__name__}: {error}"
    return result


def remove_worker(root: str, name: str) -> str | None:
    try:
        ImageStore(Path(root)).remove(name)
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"


def unpack_worker(root: str, name: str) -> None:
    store = ImageStore(Path(root))
    store.unpack(store.resolve(name))


def partial_ingest_worker(root: str, digest: str, data: bytes, ready: Any) -> None:
    """Writes `data` (a prefix of the blob) into an ingest, says so, then hangs until killed."""
    store = ImageStore(Path(root))
    with store.ingest(digest) as ingest:
        ingest.write(data)
        ready.set()
        time.sleep(60)


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.001) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def tree_files(root: Path) -> dict[str, bytes]:
    """Regular files under `root` with contents, for before/after comparisons of sentinel dirs."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def listing(root: Path) -> list[str]:
    return sorted(os.listdir(root)) if root.exists() else []
