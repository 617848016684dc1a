"""Layer unpacking: each layer once, into a snapshot keyed by its chain ID, in overlayfs form.

Representation. `snapshots/<chain-id hex>/fs` holds ONE layer's own diff (not the whole root
filesystem up to it), the way overlayfs wants a lower directory:

- a whiteout `.wh.<name>` becomes a character device 0/0 named `<name>` (what overlayfs treats
  as "deleted in the layers below"); a directory carrying `.wh..wh..opq` gets the overlay
  opaque xattr (`trusted.overlay.opaque=y` when we may set it, and `user.overlay.opaque=y` for
  rootless `userxattr` mounts);
- whiteouts and opaque directories are also listed in `snapshots/<hex>/snapshot.json`, which is
  what `materialize` uses, so a merged tree never depends on device nodes or xattrs (and a
  kernel that refuses unprivileged whiteout devices is recorded as `overlay_whiteouts: false`).

Stacking an image's snapshot dirs (lowest first) with overlay semantics gives its root
filesystem; `materialize` applies them in order to a plain directory for engines without
overlayfs. Chain IDs follow the image-spec: chainID(L0) = diffID(L0), chainID(Ln) =
sha256(chainID(Ln-1) + " " + diffID(Ln)).

Crash safety: a layer is unpacked into `snapshots/.tmp-<hex>-<pid>-<token>/` under a per-chain
flock, verified, flushed (syncfs) and renamed to `snapshots/<hex>` with its `snapshot.json`
inside, so a snapshot is visible complete or not at all; a temp dir of a process killed
mid-unpack is removed by the next unpack of that chain (whose lock proves its owner dead).

Safety of the tar stream (all refused with `UnsafeLayer`, naming the entry): absolute paths,
`..` components, writing through any symlink (every directory on the way is opened with
O_NOFOLLOW relative to its parent's descriptor; the message says whether the symlink points
outside the root), hardlinks whose target is absolute, climbs out, or is not in the same layer,
and device files when not running as root. Files are created with O_EXCL|O_NOFOLLOW, so an
existing symlink is never written through either.

Streaming: the blob is read once, through a hash of the compressed bytes (the layer digest) and
a hash of the uncompressed tar (the diff_id, checked against the config's rootfs.diff_ids);
nothing holds a whole layer in memory. Compression is detected from the bytes: gzip, zstd
(through `zstandard`) or none.

This module never decides which snapshots an image needs or may be deleted (that is images.py).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import shutil
import stat
import tarfile
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ocispec.digest import Digest

from .errors import BadLayer, DigestMismatch, SnapshotMissing, StoreError, UnsafeLayer, UnsupportedLayer
from .files import TEMP_PREFIX, fsync_dir, syncfs, temp_name, write_all
from .locks import FileLock

try:  # optional at import time so a missing wheel gives a clear error only for zstd layers
    import zstandard
except ImportError:  # pragma: no cover - zstandard is a declared dependency
    zstandard = None  # type: ignore[assignment]

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
AUFS_METADATA_PREFIX = ".wh..wh."
SNAPSHOT_META = "snapshot.json"
TRASH_PREFIX = ".trash-"
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
COPY_CHUNK = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
LAYER_SUFFIXES = (".tar", "tar+gzip", "tar.gzip", "tar+zstd")

_DECOMPRESSION_ERRORS: tuple[type[Exception], ...] = (EOFError, gzip.BadGzipFile, zlib.error) + (
    (zstandard.ZstdError,) if zstandard is not None else ()
)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def is_privileged() -> bool:
    return os.geteuid() == 0


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain ID of each layer of an image whose config lists `diff_ids` (lowest first)."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            chains.append("sha256:" + hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest())
    return chains


# -- reading a layer blob ------------------------------------------------------------------------


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Hashing:
    """Passes reads through, hashing every byte."""

    def __init__(self, source: _Readable, hasher: Any) -> None:
        self.source = source
        self.hasher = hasher

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.hasher.update(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(COPY_CHUNK):
            pass


def open_decompressed(raw: _Readable) -> tuple[str, _Readable]:
    """("gzip" | "zstd" | "none", a reader of the uncompressed bytes), sniffed from `raw`'s first
    bytes, so a layer's media type need not be trusted to say how it is compressed."""
    magic = raw.read(4)
    source = _Prefixed(magic, raw)
    if magic.startswith(GZIP_MAGIC):
        return "gzip", gzip.GzipFile(fileobj=source, mode="rb")  # type: ignore[arg-type,return-value]
    if magic == ZSTD_MAGIC:
        if zstandard is None:
            raise UnsupportedLayer("a layer is zstd-compressed and the zstandard module is not installed")
        return "zstd", zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)  # type: ignore[arg-type,return-value]
    return "none", source


class _Prefixed:
    """`prefix` (bytes already read to sniff the format), then the rest of `source`."""

    def __init__(self, prefix: bytes, source: _Readable) -> None:
        self.prefix = prefix
        self.source = source

    def read(self, size: int = -1) -> bytes:
        if not self.prefix:
            return self.source.read(size)
        head, self.prefix = (self.prefix, b"") if size < 0 or size >= len(self.prefix) else (self.prefix[:size], self.prefix[size:])
        if size < 0:
            return head + self.source.read()
        return head + (self.source.read(size - len(head)) if size > len(head) else b"")

    def readable(self) -> bool:
        return True


def check_layer_media_type(media_type: str, digest: str) -> None:
    if "encrypted" in media_type:
        raise UnsupportedLayer(f"layer {digest} is encrypted ({media_type}); decryption is not supported")
    if not media_type.endswith(LAYER_SUFFIXES) and "rootfs.diff.tar" not in media_type:
        raise UnsupportedLayer(f"layer {digest} has media type {media_type!r}, which is not a filesystem layer tar")


class LayerStream:
    """The uncompressed tar of a layer blob, hashed twice on the way (see the module docstring)."""

    def __init__(self, raw: BinaryIO, digest: str, diff_id: str) -> None:
        self.digest = digest
        self.diff_id = diff_id
        self._raw = _Hashing(raw, Digest.parse(digest).hasher())
        self.compression, decompressed = open_decompressed(self._raw)
        self.tar = _Hashing(decompressed, Digest.parse(diff_id).hasher())

    def finish(self) -> None:
        """Read to the end of both streams and compare both digests."""
        self.tar.drain()  # the tar's end-of-archive blocks and padding belong to the diff_id
        self._raw.drain()
        algorithm = Digest.parse(self.digest).algorithm
        actual = f"{algorithm}:{self._raw.hasher.hexdigest()}"
        if actual != self.digest:
            raise DigestMismatch(f"layer {self.digest} is corrupt on disk: its bytes hash to {actual}")
        algorithm = Digest.parse(self.diff_id).algorithm
        actual = f"{algorithm}:{self.tar.hasher.hexdigest()}"
        if actual != self.diff_id:
            raise DigestMismatch(
                f"layer {self.digest}: its uncompressed content hashes to {actual}, "
                f"but the image config's rootfs.diff_ids says {self.diff_id}"
            )


# -- applying a tar as an overlay-style diff ---------------------------------------------------


@dataclass
class _Meta:
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    xattrs: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, member: tarfile.TarInfo) -> _Meta:
        xattrs = {}
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                xattrs[key[len("SCHILY.xattr.") :]] = value.encode("utf-8", "surrogateescape")
        return cls(member.mode & 0o7777, member.uid, member.gid, int(member.mtime * 1_000_000_000), xattrs)


@dataclass(frozen=True)
class LayerDiff:
    """What unpacking one layer produced, besides its files."""

    whiteouts: list[str]
    opaque: list[str]
    size: int
    overlay_whiteouts: bool


def safe_parts(path: str, entry: str, what: str = "path") -> list[str]:
    """`path` as components below the root, or UnsafeLayer if it is absolute or climbs out."""
    if not path or "\x00" in path:
        raise UnsafeLayer(f"refusing layer entry {entry!r}: empty {what} or a NUL byte in it")
    if path.startswith("/"):
        raise UnsafeLayer(f"refusing layer entry {entry!r}: {what} {path!r} is absolute, outside the layer root")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"refusing layer entry {entry!r}: {what} {path!r} has a '..' component that escapes the root")
    return parts


def _symlink_escapes(parent: Sequence[str], target: str) -> bool:
    """Whether a symlink in directory `parent` with `target` resolves (lexically) outside the root."""
    if target.startswith("/"):
        return True  # on the host, an absolute target is outside the unpack root
    depth = len(parent)
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _is_whiteout_device(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _set_xattrs(target: int | str, xattrs: Mapping[str, bytes], privileged: bool, **kwargs: Any) -> None:
    for name, value in xattrs.items():
        if name.startswith(OVERLAY_XATTR_PREFIXES):
            continue  # a layer must not forge overlay whiteout/opaque/redirect markers
        if not privileged and not name.startswith("user."):
            continue
        try:
            os.setxattr(target, name, value, **kwargs)
        except OSError:
            pass  # best effort: the filesystem may not support the namespace


class LayerApplier:
    """Writes the entries of one layer tar into an empty directory, safely (see module docstring)."""

    def __init__(self, root: Path, *, privileged: bool | None = None) -> None:
        self.privileged = is_privileged() if privileged is None else privileged
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.whiteouts: set[str] = set()
        self.opaque: set[str] = set()
        self.dirs: dict[str, _Meta] = {}
        self.size = 0
        self.device_whiteouts = True

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def apply(self, tar: tarfile.TarFile) -> LayerDiff:
        for member in tar:
            self.entry(tar, member)
        return self.finish()

    # -- directories on the way ------------------------------------------------------------

    def _open_dir(self, parts: Sequence[str], entry: str, *, create: bool = True, what: str = "it would be written") -> int:
        """A descriptor of directory root/parts, never following a symlink on the way."""
        fd = os.dup(self.root_fd)
        try:
            for index, part in enumerate(parts):
                sofar = "/".join(parts[: index + 1])
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise BadLayer(f"layer entry {entry!r}: {sofar!r} is not in this layer") from None
                    child = self._make_dir(fd, part, sofar)
                except OSError as error:
                    if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    child = self._not_a_dir(fd, parts, index, entry, create, what)
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _make_dir(self, parent_fd: int, name: str, sofar: str) -> int:
        os.mkdir(name, 0o755, dir_fd=parent_fd)
        child = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        os.fchmod(child, 0o755)  # whatever the umask
        self._created(sofar, is_dir=True)
        return child

    def _not_a_dir(self, fd: int, parts: Sequence[str], index: int, entry: str, create: bool, what: str) -> int:
        part = parts[index]
        sofar = "/".join(parts[: index + 1])
        st = os.stat(part, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(part, dir_fd=fd)
            where = "outside the root" if _symlink_escapes(parts[:index], target) else "inside the root"
            raise UnsafeLayer(
                f"refusing layer entry {entry!r}: {what} through the symlink {sofar!r} -> {target!r}, "
                f"which points {where} (unpacking never follows symlinks)"
            )
        if create and _is_whiteout_device(st) and sofar in self.whiteouts:
            # `.wh.x` then `x/...` in one layer: the layers' x is deleted, this layer's x replaces it.
            os.unlink(part, dir_fd=fd)
            return self._make_dir(fd, part, sofar)
        raise BadLayer(f"layer entry {entry!r}: {sofar!r} is not a directory")

    # -- bookkeeping of whiteouts and opaque directories ----------------------------------------

    def _created(self, path: str, *, is_dir: bool) -> None:
        """Something of this layer now exists at `path`: it wins over a same-layer whiteout, and a
        directory that replaces a whited-out one must hide the lower layers' contents."""
        if path in self.whiteouts:
            self.whiteouts.discard(path)
            if is_dir:
                self.opaque.add(path)

    def _forget(self, path: str) -> None:
        prefix = path + "/"
        self.whiteouts = {p for p in self.whiteouts if p != path and not p.startswith(prefix)}
        self.opaque = {p for p in self.opaque if p != path and not p.startswith(prefix)}
        self.dirs = {p: m for p, m in self.dirs.items() if p != path and not p.startswith(prefix)}

    def _clear(self, parent_fd: int, name: str, path: str, *, keep_dir: bool) -> bool:
        """Remove what this layer already has at `path`; True if it is a directory that was kept."""
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(name, dir_fd=parent_fd)
            self._forget(path)
        else:
            os.unlink(name, dir_fd=parent_fd)
        return False

    # -- one entry -----------------------------------------------------------------------------

    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = safe_parts(name, name)
        if not parts:
            if not member.isdir():
                raise BadLayer(f"layer entry {name!r} names the root but is not a directory")
            self.dirs[""] = _Meta.of(member)
            return
        *parent, base = parts
        path = "/".join(parts)
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(name, parent, base)
            return
        if member.ischr() and member.devmajor == 0 and member.devminor == 0:
            self._whiteout_path(name, parent, base)  # already in overlay form
            return
        parent_fd = self._open_dir(parent, name)
        try:
            if member.isdir():
                if not self._clear(parent_fd, base, path, keep_dir=True):
                    os.mkdir(base, 0o755, dir_fd=parent_fd)
                    self._created(path, is_dir=True)
                self.dirs[path] = _Meta.of(member)
                return
            if member.islnk():
                self._hardlink(parent_fd, parts, member)
                return
            if member.ischr() or member.isblk():
                if not self.privileged:
                    raise UnsafeLayer(f"refusing layer entry {name!r}: device files can only be unpacked as root")
            elif not (member.isreg() or member.issym() or member.isfifo()):
                raise BadLayer(f"layer entry {name!r} has an unsupported tar entry type {member.type!r}")
            self._clear(parent_fd, base, path, keep_dir=False)
            if member.isreg():
                self._file(tar, parent_fd, base, member)
            elif member.issym():
                os.symlink(member.linkname, base, dir_fd=parent_fd)
                self._finish_node(parent_fd, base, member, chmod=False)
            elif member.isfifo():
                os.mkfifo(base, 0o600, dir_fd=parent_fd)
                self._finish_node(parent_fd, base, member)
            else:
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=parent_fd)
                self._finish_node(parent_fd, base, member)
            self._created(path, is_dir=False)
        finally:
            os.close(parent_fd)

    def _file(self, tar: tarfile.TarFile, parent_fd: int, base: str, member: tarfile.TarInfo) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=parent_fd)
        try:
            source = tar.extractfile(member)
            if source is not None:
                while chunk := source.read(COPY_CHUNK):
                    write_all(fd, chunk)
            self.size += member.size
            meta = _Meta.of(member)
            if self.privileged:
                os.fchown(fd, meta.uid, meta.gid)  # before chmod: chown clears set-id bits
            os.fchmod(fd, meta.mode)
            _set_xattrs(fd, meta.xattrs, self.privileged)
            os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
        finally:
            os.close(fd)

    def _finish_node(self, parent_fd: int, base: str, member: tarfile.TarInfo, *, chmod: bool = True) -> None:
        meta = _Meta.of(member)
        if self.privileged:
            os.chown(base, meta.uid, meta.gid, dir_fd=parent_fd, follow_symlinks=False)
        if chmod:  # a node we just created (fifo, device): no symlink can be in its place
            os.chmod(base, meta.mode, dir_fd=parent_fd)
        os.utime(base, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=parent_fd, follow_symlinks=False)

    def _hardlink(self, parent_fd: int, parts: list[str], member: tarfile.TarInfo) -> None:
        name = member.name
        target = safe_parts(member.linkname, name, "hardlink target")
        if not target:
            raise UnsafeLayer(f"refusing layer entry {name!r}: a hardlink to the root directory")
        if target == parts:
            return  # a link to itself: nothing to do
        path = "/".join(parts)
        self._clear(parent_fd, parts[-1], path, keep_dir=False)
        *target_parent, target_base = target
        target_fd = self._open_dir(
            target_parent, name, create=False, what=f"its hardlink target {member.linkname!r} would be reached"
        )
        try:
            try:
                st = os.stat(target_base, dir_fd=target_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise BadLayer(
                    f"layer entry {name!r}: hardlink target {member.linkname!r} is not in this layer"
                ) from None
            if stat.S_ISDIR(st.st_mode):
                raise UnsafeLayer(f"refusing layer entry {name!r}: hardlink to the directory {member.linkname!r}")
            if _is_whiteout_device(st) and "/".join(target) in self.whiteouts:
                raise BadLayer(f"layer entry {name!r}: hardlink target {member.linkname!r} is a whiteout")
            os.link(target_base, parts[-1], src_dir_fd=target_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
        finally:
            os.close(target_fd)
        self._created(path, is_dir=False)

    def _whiteout(self, entry: str, parent: list[str], base: str) -> None:
        if base == OPAQUE_WHITEOUT:
            os.close(self._open_dir(parent, entry))
            self.opaque.add("/".join(parent))
            return
        if base.startswith(AUFS_METADATA_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): no meaning here
        name = base[len(WHITEOUT_PREFIX) :]
        if name in (".", ".."):
            raise UnsafeLayer(f"refusing layer entry {entry!r}: a whiteout of {name!r}")
        self._whiteout_path(entry, parent, name)

    def _whiteout_path(self, entry: str, parent: list[str], name: str) -> None:
        path = "/".join([*parent, name])
        parent_fd = self._open_dir(parent, entry)
        try:
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None:
                # This layer already put something there. A whiteout hides only the layers below:
                # this layer's entry stays, and if it is a directory it must hide their contents.
                if stat.S_ISDIR(st.st_mode):
                    self.opaque.add(path)
                return
            self.whiteouts.add(path)
            if self.device_whiteouts:
                try:
                    os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent_fd)
                except PermissionError:
                    self.device_whiteouts = False  # recorded in snapshot.json only
        finally:
            os.close(parent_fd)

    # -- after the last entry ---------------------------------------------------------------------

    def _stat(self, path: str) -> os.stat_result | None:
        *parent, name = path.split("/")
        try:
            fd = self._open_dir(parent, path, create=False)
        except (StoreError, OSError):
            return None
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    def finish(self) -> LayerDiff:
        whiteouts = []
        for path in sorted(self.whiteouts):
            st = self._stat(path)
            if (st is not None and _is_whiteout_device(st)) or (st is None and not self.device_whiteouts):
                whiteouts.append(path)
        opaque = []
        for path in sorted(self.opaque):
            st = self._stat(path) if path else os.fstat(self.root_fd)
            if st is None or not stat.S_ISDIR(st.st_mode):
                continue
            opaque.append(path)
            fd = self._open_dir(path.split("/") if path else [], path, create=False)
            try:
                for prefix in ("trusted", "user"):
                    if prefix == "trusted" and not self.privileged:
                        continue
                    try:
                        os.setxattr(fd, f"{prefix}.overlay.opaque", b"y")
                    except OSError:
                        pass
            finally:
                os.close(fd)
        # Directories' own metadata last (writing inside changed their mtimes), deepest first.
        for path in sorted(self.dirs, key=lambda p: (p.count("/") + 1) if p else 0, reverse=True):
            meta = self.dirs[path]
            try:
                fd = self._open_dir(path.split("/") if path else [], path, create=False)
            except (StoreError, OSError):
                continue
            try:
                if self.privileged:
                    os.fchown(fd, meta.uid, meta.gid)
                os.fchmod(fd, meta.mode)
                _set_xattrs(fd, meta.xattrs, self.privileged)
                os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
            finally:
                os.close(fd)
        return LayerDiff(whiteouts, opaque, self.size, self.device_whiteouts)


def apply_tar(stream: _Readable, root: Path, *, privileged: bool | None = None) -> LayerDiff:
    """Unpack the (uncompressed) tar `stream` into the empty directory `root` as an overlay diff."""
    applier = LayerApplier(root, privileged=privileged)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            return applier.apply(tar)
    except tarfile.TarError as error:
        raise BadLayer(f"not a valid layer tar: {error}") from None
    finally:
        applier.close()


def unpack_layer(
    blob: Path, media_type: str, digest: str, diff_id: str, root: Path, *, privileged: bool | None = None
) -> LayerDiff:
    """Unpack the layer blob into `root`, verifying its digest and diff_id while streaming."""
    check_layer_media_type(media_type, digest)
    with open(blob, "rb") as raw:
        try:
            stream = LayerStream(raw, digest, diff_id)
            diff = apply_tar(stream.tar, root, privileged=privileged)
            stream.finish()
        except StoreError as error:
            if isinstance(error, (UnsafeLayer, BadLayer)) and not str(error).startswith("layer "):
                raise type(error)(f"layer {digest}: {error}") from None
            raise
        except _DECOMPRESSION_ERRORS as error:
            raise BadLayer(f"layer {digest} is not valid {media_type}: {error}") from None
    return diff


# -- snapshots -----------------------------------------------------------------------------------


def remove_tree(path: Path) -> None:
    """rmtree that also empties read-only directories (a layer's `0555` dirs, when not root)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        path.unlink()
        return

    def tolerate_vanished(_function: Any, _path: str, info: Any) -> None:
        if not issubclass(info[0], FileNotFoundError):  # another process removing it too
            raise info[1]

    try:
        shutil.rmtree(path, onerror=tolerate_vanished)
    except PermissionError:
        for directory, subdirs, _files in os.walk(path):
            for name in subdirs:
                child = os.path.join(directory, name)
                if stat.S_ISDIR(os.lstat(child).st_mode):  # never chmod through a symlink
                    os.chmod(child, 0o700)
        os.chmod(path, 0o700)
        shutil.rmtree(path, onerror=tolerate_vanished)


@dataclass(frozen=True)
class SnapshotInfo:
    chain_id: str
    path: Path
    meta: dict[str, Any]

    @property
    def fs(self) -> Path:
        return self.path / "fs"


class Snapshotter:
    """`root/snapshots/<chain hex>/{fs/, snapshot.json}` and their per-chain locks."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "snapshots"
        self.locks_dir = root / "locks"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.locks_dir.mkdir(parents=True, exist_ok=True)

    def path(self, chain_id: str) -> Path:
        parsed = Digest.parse(chain_id)
        return self.dir / parsed.encoded

    def exists(self, chain_id: str) -> bool:
        return (self.path(chain_id) / SNAPSHOT_META).is_file()

    def info(self, chain_id: str) -> SnapshotInfo:
        path = self.path(chain_id)
        try:
            meta = json.loads((path / SNAPSHOT_META).read_text())
        except FileNotFoundError:
            raise SnapshotMissing(f"layer snapshot {chain_id} is not unpacked") from None
        return SnapshotInfo(chain_id, path, meta)

    def _lock(self, chain_id: str) -> FileLock:
        return FileLock(self.locks_dir / f"snapshot-{Digest.parse(chain_id).encoded}.lock", unlink_on_release=True)

    def ensure(
        self,
        chain_id: str,
        *,
        parent: str | None,
        blob: Callable[[], Path],
        media_type: str,
        digest: str,
        diff_id: str,
    ) -> Path:
        """Unpack the layer (whose blob file `blob()` gives) into its snapshot unless it is there
        already; returns the snapshot's fs dir."""
        final = self.path(chain_id)
        if self.exists(chain_id):
            return final / "fs"
        with self._lock(chain_id):
            if self.exists(chain_id):
                return final / "fs"
            hex_id = Digest.parse(chain_id).encoded
            self._sweep_temp(hex_id)  # left by killed unpacks of this chain: we hold its lock now
            if final.exists():  # not ours (no snapshot.json): never trust it
                os.rename(final, self.dir / f"{TRASH_PREFIX}{hex_id}-{os.getpid()}-{time.monotonic_ns()}")
            temp = self.dir / temp_name(hex_id)
            (temp / "fs").mkdir(parents=True)
            os.chmod(temp / "fs", 0o755)
            try:
                diff = unpack_layer(blob(), media_type, digest, diff_id, temp / "fs")
                meta = {
                    "chain_id": chain_id,
                    "parent": parent,
                    "diff_id": diff_id,
                    "digest": digest,
                    "media_type": media_type,
                    "whiteouts": diff.whiteouts,
                    "opaque": diff.opaque,
                    "overlay_whiteouts": diff.overlay_whiteouts,
                    "size": diff.size,
                    "unpacked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                fd = os.open(temp / SNAPSHOT_META, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                try:
                    write_all(fd, json.dumps(meta, indent=2).encode())
                finally:
                    os.close(fd)
                syncfs(temp)
                os.rename(temp, final)
                fsync_dir(self.dir)
            except BaseException:
                remove_tree(temp)
                raise
        return final / "fs"

    def _sweep_temp(self, hex_id: str) -> None:
        for entry in list(os.scandir(self.dir)):
            if entry.name.startswith(f"{TEMP_PREFIX}{hex_id}-"):
                remove_tree(Path(entry.path))

    def on_disk(self) -> list[str]:
        """Chain IDs of the complete snapshots present."""
        return sorted(
            f"sha256:{entry.name}"
            for entry in os.scandir(self.dir)
            if not entry.name.startswith(".") and os.path.isfile(os.path.join(entry.path, SNAPSHOT_META))
        )

    def retire(self, chain_id: str) -> Path | None:
        """Move the snapshot out of sight (atomically); returns the trash dir for `remove_tree`.

        Skips (returns None) a snapshot whose chain lock someone holds: they are unpacking it.
        """
        lock = self._lock(chain_id)
        if not lock.acquire(blocking=False):
            return None
        try:
            final = self.path(chain_id)
            if not final.exists():
                return None
            trash = self.dir / f"{TRASH_PREFIX}{final.name}-{os.getpid()}-{time.monotonic_ns()}"
            os.rename(final, trash)
            return trash
        finally:
            lock.release()

    def sweep(self) -> None:
        """Remove trash, and temp dirs of unpacks whose process died (their chain lock is free)."""
        for entry in list(os.scandir(self.dir)):
            if entry.name.startswith(TRASH_PREFIX):
                remove_tree(Path(entry.path))
            elif entry.name.startswith(TEMP_PREFIX):
                hex_id = entry.name[len(TEMP_PREFIX) :].split("-", 1)[0]
                lock = self._lock(f"sha256:{hex_id}") if len(hex_id) == 64 else None
                if lock is not None and lock.acquire(blocking=False):
                    try:
                        remove_tree(Path(entry.path))
                    finally:
                        lock.release()


# -- merging snapshots into a plain directory ------------------------------------------------------


def _remove(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        remove_tree(path)
    else:
        path.unlink()


def _copy_xattrs(source: str, dest: int | str, privileged: bool, follow: bool = True) -> None:
    try:
        names = os.listxattr(source, follow_symlinks=False)
    except OSError:
        return
    values = {}
    for name in names:
        try:
            values[name] = os.getxattr(source, name, follow_symlinks=False)
        except OSError:
            pass
    _set_xattrs(dest, values, privileged, **({} if follow else {"follow_symlinks": False}))


def _copy_file(source: str, dest: Path) -> int:
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except BaseException:
        os.close(src)
        raise
    try:
        try:
            while os.copy_file_range(src, dst, 1 << 30):
                pass
        except OSError:
            os.lseek(src, 0, os.SEEK_SET)
            os.lseek(dst, 0, os.SEEK_SET)
            os.ftruncate(dst, 0)
            while chunk := os.read(src, COPY_CHUNK):
                write_all(dst, chunk)
        return dst
    except BaseException:
        os.close(dst)
        raise
    finally:
        os.close(src)


class _Merger:
    def __init__(self, dest: Path, privileged: bool) -> None:
        self.dest = dest
        self.privileged = privileged
        self.dir_meta: dict[str, os.stat_result] = {}
        self.dir_sources: dict[str, str] = {}

    def _drop(self, path: str, *, keep_self: bool = False) -> None:
        """Forget directory metadata at and under `path` (it was deleted or emptied)."""
        prefix = f"{path}/" if path else ""
        below = [p for p in self.dir_meta if p != path and p.startswith(prefix)]
        for known in below + ([path] if path in self.dir_meta and not keep_self else []):
            del self.dir_meta[known]
            del self.dir_sources[known]

    def layer(self, fs: Path, meta: Mapping[str, Any]) -> None:
        whiteouts = set(meta.get("whiteouts", ()))
        opaque = set(meta.get("opaque", ()))
        if "" in opaque:
            for child in list(self.dest.iterdir()):
                _remove(child)
            self._drop("", keep_self=True)
        self._walk(str(fs), "", whiteouts, opaque, {})

    def _walk(self, source: str, rel: str, whiteouts: set[str], opaque: set[str], links: dict[tuple[int, int], Path]) -> None:
        with os.scandir(source) as iterator:
            entries = sorted(iterator, key=lambda entry: entry.name)
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            dest = self.dest / path
            st = entry.stat(follow_symlinks=False)
            if path in whiteouts or _is_whiteout_device(st):
                _remove(dest)
                self._drop(path)
                continue
            if stat.S_ISDIR(st.st_mode):
                try:
                    existing = dest.lstat()
                except FileNotFoundError:
                    existing = None
                if existing is None or not stat.S_ISDIR(existing.st_mode):
                    _remove(dest)
                    os.mkdir(dest, 0o700)
                elif path in opaque:
                    for child in list(dest.iterdir()):
                        _remove(child)
                    self._drop(path, keep_self=True)
                self.dir_meta[path] = st
                self.dir_sources[path] = entry.path
                self._walk(entry.path, path, whiteouts, opaque, links)
                continue
            _remove(dest)
            self._drop(path)
            self._node(entry.path, st, dest, links)

    def _node(self, source: str, st: os.stat_result, dest: Path, links: dict[tuple[int, int], Path]) -> None:
        mode = st.st_mode
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], dest, follow_symlinks=False)
                return
            links[key] = dest
            fd = _copy_file(source, dest)
            try:
                if self.privileged:
                    os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(mode))
                _copy_xattrs(source, fd, self.privileged)
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
            return
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(source), dest)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(dest, 0o600)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            if not self.privileged:
                raise UnsafeLayer(f"cannot materialize the device file /{dest.relative_to(self.dest)} without root")
            os.mknod(dest, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        else:
            return  # sockets are never in layers
        if self.privileged:
            os.chown(dest, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(mode):
            os.chmod(dest, stat.S_IMODE(mode))
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def finish(self) -> None:
        for path in sorted(self.dir_meta, key=lambda p: p.count("/"), reverse=True):
            st = self.dir_meta[path]
            dest = self.dest / path
            fd = os.open(dest, _DIR_FLAGS)
            try:
                if self.privileged:
                    os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                _copy_xattrs(self.dir_sources[path], fd, self.privileged)
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)


def materialize(layers: Iterable[SnapshotInfo], dest: Path, *, privileged: bool | None = None) -> None:
    """Write the merged root filesystem of `layers` (lowest first) into the empty directory `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise StoreError(f"cannot materialize into {dest}: the directory is not empty")
    merger = _Merger(dest.resolve(), is_privileged() if privileged is None else privileged)
    for layer in layers:
        merger.layer(layer.fs, layer.meta)
    merger.finish()
