"""COPY and ADD on the filesystem: sources in a build context (or another image's root), copied
into a container's mounted root filesystem with Docker's rules.

- Sources are context-relative; glob characters (`*`, `?`, `[...]`) match per path component; a
  source that leaves the context is refused ("forbidden path outside the build context"); a
  missing one is an error naming it.
- A directory source copies its contents, not itself. Several sources (or a glob) need a
  destination directory ending in `/`. A destination ending in `/`, or an existing directory,
  receives files under their own names; otherwise the one file is written at the destination.
- Destination paths are resolved inside the container's root: a symlink in the image is
  followed, but never out of the root (Docker's FollowSymlinkInScope), so no COPY writes to the
  host.
- Copies keep the source's mode and times; owners are 0:0 unless `--chown`; `--chmod` sets the
  mode. ADD extracts local tar archives (plain, gzip, bzip2, xz) into the destination, through
  tarfile's `data` filter (no absolute paths, no climbing out, no device files).
- `checksum` hashes what would be copied (names, modes, owners, contents), for the build cache.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidParameter
from ..rootfs import resolve_in_root

ARCHIVE_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


class CopyError(InvalidParameter):
    pass


@dataclass(frozen=True)
class Source:
    path: Path
    """On the host (in the context, or in another image's root)."""
    relative: str
    """As written, cleaned (for messages and the checksum)."""


def find_sources(base: Path, patterns: list[str], *, instruction: str, line: int, in_context: bool = True) -> list[Source]:
    found: list[Source] = []
    for pattern in patterns:
        cleaned = posixpath.normpath(pattern.lstrip("/")) if pattern.strip("/") else "."
        if cleaned == ".." or cleaned.startswith("../"):
            raise CopyError(f"{instruction} failed (line {line}): forbidden path outside the build context: {pattern}")
        if any(char in cleaned for char in "*?["):
            matches = _glob(base, cleaned)
            if not matches:
                raise CopyError(f"{instruction} failed (line {line}): no source files were specified matching {pattern}")
            found += [Source(base / match, match) for match in matches]
            continue
        path = base / cleaned if in_context else resolve_in_root(base, cleaned)
        if not os.path.lexists(path):
            where = "build context or excluded by .dockerignore" if in_context else "the source image"
            raise CopyError(f"{instruction} failed (line {line}): file not found in {where}: stat {pattern}: file does not exist")
        if in_context and not os.path.realpath(path).startswith(os.path.realpath(base) + os.sep) and os.path.realpath(path) != os.path.realpath(base):
            raise CopyError(f"{instruction} failed (line {line}): forbidden path outside the build context: {pattern}")
        found.append(Source(path, cleaned))
    return found


def _glob(base: Path, pattern: str) -> list[str]:
    parts = pattern.split("/")
    current = [""]
    for part in parts:
        following = []
        for prefix in current:
            directory = base / prefix if prefix else base
            if not directory.is_dir() or directory.is_symlink():
                continue
            for name in sorted(os.listdir(directory)):
                if fnmatch.fnmatchcase(name, part):
                    following.append(f"{prefix}/{name}" if prefix else name)
        current = following
    return current


def checksum(sources: list[Source], chown: tuple[int, int] | None, chmod: int | None) -> str:
    """One sha256 over every file to copy: path, type, mode, owner, link target, contents."""
    digest = hashlib.sha256()
    digest.update(repr((chown, chmod)).encode())
    for source in sources:
        for relative, path in _tree(source.path, source.relative):
            st = os.lstat(path)
            digest.update(f"{relative}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                digest.update(os.readlink(path).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as file:
                    while chunk := file.read(1 << 20):
                        digest.update(chunk)
            digest.update(b"\0")
    return digest.hexdigest()


def _tree(path: Path, relative: str) -> list[tuple[str, Path]]:
    out = [(relative, path)]
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = Path(root) / name
                out.append((f"{relative}/{os.path.relpath(full, path)}", full))
    return out


def is_archive(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as file:
        head = file.read(512)
    if any(head.startswith(magic) for magic in ARCHIVE_MAGICS):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def copy_into(
    root: Path,
    sources: list[Source],
    destination: str,
    *,
    chown: tuple[int, int] | None,
    chmod: int | None,
    extract: bool,
    instruction: str,
    line: int,
) -> None:
    """Copy (or, for ADD, extract) `sources` to `destination` (absolute) inside `root`."""
    many = len(sources) > 1
    to_directory = destination.endswith("/") or many
    if many and not destination.endswith("/"):
        raise CopyError(
            f"{instruction} failed (line {line}): When using {instruction} with more than one source file, "
            "the destination must be a directory and end with a /"
        )
    target = resolve_in_root(root, destination)
    uid, gid = chown if chown is not None else (0, 0)
    if target.is_dir():
        to_directory = True
    for source in sources:
        if extract and is_archive(source.path):
            _make_dirs(root, destination, uid, gid)
            _extract(source.path, resolve_in_root(root, destination), uid, gid, chown is not None)
            continue
        if source.path.is_dir() and not source.path.is_symlink():
            _make_dirs(root, destination, uid, gid)
            destination_dir = resolve_in_root(root, destination)
            for name in sorted(os.listdir(source.path)):
                _copy_entry(source.path / name, destination_dir / name, uid, gid, chmod)
            continue
        if to_directory:
            _make_dirs(root, destination, uid, gid)
            final = resolve_in_root(root, destination) / source.path.name
        else:
            _make_dirs(root, posixpath.dirname(destination) or "/", 0, 0)
            final = target
        _copy_entry(source.path, final, uid, gid, chmod)


def _make_dirs(root: Path, path: str, uid: int, gid: int) -> None:
    current = ""
    for part in [p for p in path.split("/") if p]:
        current = f"{current}/{part}"
        host = resolve_in_root(root, current)
        if not host.exists():
            host.mkdir(mode=0o755)
            os.chown(host, uid, gid)
        elif not host.is_dir():
            raise CopyError(f"cannot copy to {path}: {current} is not a directory")


def _copy_entry(source: Path, target: Path, uid: int, gid: int, chmod: int | None) -> None:
    st = os.lstat(source)
    if os.path.lexists(target) and not (stat.S_ISDIR(st.st_mode) and target.is_dir() and not target.is_symlink()):
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), target)
        os.lchown(target, uid, gid)
        return
    if stat.S_ISDIR(st.st_mode):
        target.mkdir(exist_ok=True)
        for name in sorted(os.listdir(source)):
            _copy_entry(source / name, target / name, uid, gid, chmod)
        os.chmod(target, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
        os.chown(target, uid, gid)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        return
    if not stat.S_ISREG(st.st_mode):
        return  # sockets, FIFOs and devices are not copied, as Docker skips them
    shutil.copyfile(source, target, follow_symlinks=False)
    os.chmod(target, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
    os.chown(target, uid, gid)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def _extract(archive: Path, destination: Path, uid: int, gid: int, chown: bool) -> None:
    with tarfile.open(archive, mode="r:*") as tar:
        def owner_filter(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
            member = tarfile.data_filter(member, path)
            if member is not None and chown:
                member = member.replace(uid=uid, gid=gid, uname="", gname="", deep=False)
            return member

        try:
            tar.extractall(destination, filter=owner_filter)
        except (tarfile.TarError, OSError) as error:
            raise CopyError(f"ADD failed: cannot extract {archive.name}: {error}") from None
