"""`--user`: a name or ID, with an optional group, looked up in the container's own files.

Docker's rules: `name`, `uid`, `name:group`, `uid:gid` (mixes too); a name must exist in the
image's `/etc/passwd` (a group name in `/etc/group`); a numeric ID needn't. The primary group
is the passwd entry's unless one is given; the user's supplementary groups come from
`/etc/group`; HOME is the passwd entry's directory, else `/`.

The files are read from the container's root, never through a symlink (a hostile image could
point one at a host file or a FIFO); a missing or unreadable file counts as empty.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidParameter

MAX_FILE = 4 * 1024 * 1024
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


def read_in_root(root: Path, relative: str) -> str:
    """A small regular file inside `root`, every component opened without following symlinks."""
    parts = [part for part in relative.split("/") if part]
    fd = os.open(root, _DIR)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        return ""
    finally:
        os.close(fd)
    try:
        if not stat.S_ISREG(os.fstat(file_fd).st_mode):
            return ""
        return os.read(file_fd, MAX_FILE).decode(errors="replace")
    finally:
        os.close(file_fd)


def _entries(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(root: Path, spec: str) -> User:
    user_part, _, group_part = (spec or "").partition(":")
    passwd = [e for e in _entries(read_in_root(root, "etc/passwd")) if len(e) >= 7]
    groups = [e for e in _entries(read_in_root(root, "etc/group")) if len(e) >= 3]
    entry = None
    if not user_part:
        user_part = "0"
    if user_part.isdigit():
        uid = int(user_part)
        entry = next((e for e in passwd if e[2] == user_part), None)
    else:
        entry = next((e for e in passwd if e[0] == user_part), None)
        if entry is None:
            raise InvalidParameter(f"unable to find user {user_part}: no matching entries in passwd file")
        uid = _number(entry[2], spec)
    gid = _number(entry[3], spec) if entry is not None else 0
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            group = next((g for g in groups if g[0] == group_part), None)
            if group is None:
                raise InvalidParameter(f"unable to find group {group_part}: no matching entries in group file")
            gid = _number(group[2], spec)
    name = entry[0] if entry is not None else None
    additional = tuple(
        sorted({int(g[2]) for g in groups if name and len(g) > 3 and name in g[3].split(",") and g[2].isdigit()} - {gid})
    )
    home = entry[5] if entry is not None and entry[5] else "/"
    if uid > 2**32 - 2 or gid > 2**32 - 2:
        raise InvalidParameter(f"invalid user {spec!r}: IDs must be below 4294967295")
    return User(uid, gid, additional, home)


def _number(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidParameter(f"invalid user {spec!r}: its entry has a non-numeric ID {text!r}") from None
