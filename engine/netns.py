"""Persistent network namespaces: a file under the data root that a namespace is bind-mounted
on (what `ip netns add` does under /run/netns), so that the namespace exists before the
container's process and CNI can configure it, and runc joins it by path."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from . import rootfs
from .errors import EngineError


async def create(path: Path) -> None:
    """A new network namespace held by `path` (replacing a stale one)."""
    await asyncio.to_thread(remove, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    process = await asyncio.create_subprocess_exec(
        "unshare", f"--net={path}", "true", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        await asyncio.to_thread(remove, path)
        raise EngineError(f"cannot create the container's network namespace: {err.decode(errors='replace').strip()}")


def remove(path: Path) -> None:
    """Unmount and delete the namespace file (the namespace ends with its last user)."""
    with contextlib.suppress(FileNotFoundError):
        rootfs.unmount(path)
        path.unlink()
