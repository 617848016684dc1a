"""A container's root filesystem: the image's snapshots, an init layer, and a writable layer.

    lowerdir = init : top snapshot : ... : base snapshot     upperdir = upper    (overlayfs)

Snapshots are the store's unpacked layers (`client/store`), shared by every image and container
that has them and never written to. Their paths are long, and the mount option string is
limited to a page, so each is linked once under `<data root>/l/<20 hex of its chain ID>` and the
mount is made from the data root with those relative names (Docker's `l/` links), which keeps
an image of a hundred layers mountable.

The init layer holds the mount points runc needs (`/proc`, `/dev`, `/sys`, `/etc/hosts`,
`/etc/hostname`, `/etc/resolv.conf`, ...) so that runc never creates them in the upper dir, and a
commit (the upper dir's diff) never contains them -- Docker's `-init` layer, for the same reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from pathlib import Path

from .errors import EngineError
from .records import ContainerFiles

MNT_DETACH = 2
INIT_DIRS = ("dev", "dev/pts", "dev/shm", "dev/mqueue", "proc", "sys", "etc")
INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf", ".dockerenv")
LINK_DIR = "l"


def link_name(chain_id: str) -> str:
    return chain_id.split(":", 1)[1][:20]


def ensure_links(data_root: Path, snapshot_dirs: list[tuple[str, Path]]) -> list[str]:
    """`l/<short>` -> each snapshot's fs dir; the relative names, in the order given."""
    links = data_root / LINK_DIR
    links.mkdir(exist_ok=True)
    names = []
    for chain_id, fs in snapshot_dirs:
        name = f"{LINK_DIR}/{link_name(chain_id)}"
        path = data_root / name
        try:
            current = os.readlink(path)
        except FileNotFoundError:
            current = None
        if current != str(fs):
            temp = links / f".{link_name(chain_id)}.{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            os.symlink(fs, temp)
            os.rename(temp, path)
        names.append(name)
    return names


def prepare_layers(files: ContainerFiles) -> None:
    """The container's init layer, upper and work dirs (idempotent)."""
    for path in (files.upper, files.work, files.merged):
        path.mkdir(parents=True, exist_ok=True)
    for name in INIT_DIRS:
        (files.init / name).mkdir(parents=True, exist_ok=True)
    for name in INIT_FILES:
        (files.init / name).touch(exist_ok=True)


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if len(fields) > 4 and _unescape(fields[4]) == target:
                return True
    return False


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount(data_root: Path, files: ContainerFiles, lower_links: list[str]) -> None:
    """Mount the container's overlay at `files.merged` (lower_links top first)."""
    if is_mounted(files.merged):
        return
    init = os.path.relpath(files.init, data_root)
    lower = ":".join([init, *lower_links])
    options = f"lowerdir={lower},upperdir={files.upper},workdir={files.work}"
    result = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(files.merged)],
        cwd=data_root,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise EngineError(f"cannot mount the container's root filesystem: {result.stderr.strip() or result.returncode}")


def unmount(path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    while is_mounted(path):
        if libc.umount2(os.fsencode(str(path)), MNT_DETACH) != 0:
            error = ctypes.get_errno()
            raise EngineError(f"cannot unmount {path}: {os.strerror(error)}")


MAX_LINKS = 255


def resolve_in_root(root: Path, path: str) -> Path:
    """The host path of `path` inside `root`, following symlinks as if `root` were `/`."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            links += 1
            if links > MAX_LINKS:
                raise EngineError(f"too many symlinks resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)
