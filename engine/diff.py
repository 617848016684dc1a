"""A container's writable layer (an overlayfs upper dir) as an OCI layer tar.

The upper dir of an overlay mounted with `redirect_dir=off, metacopy=off, index=off` (this
kernel's defaults, checked in the tests) is already a plain diff against the layers below:

- added or changed files and directories are there whole (changed ones copied up);
- a deleted file or directory is a character device 0:0 -> the OCI whiteout `.wh.<name>`;
- a directory removed and made again is marked `trusted.overlay.opaque=y` -> the directory
  plus `.wh..wh..opq` inside it (nothing below shows through);
- overlayfs's own xattrs (`trusted.overlay.origin`, `impure`, ...) are never written, nor any
  other xattr: the layer carries modes, owners, times and links, as Docker's commits do.

Mount points never appear: runc's are in the container's init layer, not the upper dir.
Entries are written sorted (a parent before its children), hard links as tar links to the
first path of the inode. The tar goes to any writable binary stream; nothing is buffered whole.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path
from typing import IO

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
COPY_CHUNK = 1024 * 1024


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def changed_paths(upper: Path) -> list[tuple[str, str]]:
    """(kind, path) of every change, for `docker diff`: A added / C changed / D deleted.

    Without the lower layers at hand, a copied-up entry (which carries `trusted.overlay.origin`)
    is a change and anything else an addition, which is what overlayfs records.
    """
    changes = []
    for relative, st in _walk(upper):
        full = os.path.join(upper, relative)
        if _is_whiteout(st):
            changes.append(("D", "/" + relative))
            continue
        try:
            os.getxattr(full, "trusted.overlay.origin", follow_symlinks=False)
            kind = "C"
        except OSError:
            kind = "A"
        changes.append((kind, "/" + relative))
    return changes


def _walk(root: Path) -> list[tuple[str, os.stat_result]]:
    out: list[tuple[str, os.stat_result]] = []

    def visit(directory: str, prefix: str) -> None:
        with os.scandir(directory) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            full = os.path.join(directory, name)
            relative = f"{prefix}{name}"
            st = os.lstat(full)
            out.append((relative, st))
            if stat.S_ISDIR(st.st_mode):
                visit(full, relative + "/")

    visit(str(root), "")
    return out


def write_layer(upper: Path, out: IO[bytes]) -> int:
    """Write the upper dir's changes to `out` as a tar; the number of entries written."""
    count = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for relative, st in _walk(upper):
            full = os.path.join(upper, relative)
            if _is_whiteout(st):
                head, _, name = relative.rpartition("/")
                tar.addfile(_empty_file(f"{head}/{WHITEOUT_PREFIX}{name}" if head else f"{WHITEOUT_PREFIX}{name}", st))
                count += 1
                continue
            info = tar.gettarinfo(full, arcname=relative)
            info.uname = info.gname = ""
            info.pax_headers = {}
            if info.isreg():
                with open(full, "rb") as source:
                    tar.addfile(info, source)
            else:
                tar.addfile(info)
            count += 1
            if stat.S_ISDIR(st.st_mode) and _is_opaque(full):
                tar.addfile(_empty_file(f"{relative}/{OPAQUE_MARKER}", st))
                count += 1
    return count


def _empty_file(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE
    info.size = 0
    info.mode = 0o644
    info.mtime = int(st.st_mtime)
    return info
