"""Housekeeping in the background of a running registry: upload sessions that outlived
`registry.upload_ttl` are purged (with what interrupted writes left), and, when
`registry.gc.interval` is set, garbage collection runs every that many seconds (registry.gc is
safe beside pushes and on several replicas at once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from .gc import collect
from .services import Services

log = logging.getLogger("dockyard.maintenance")
PURGE_EVERY = 3600.0


async def _purge_uploads(registry: Services) -> None:
    ttl = registry.options.upload_ttl
    purged = await registry.uploads.purge_stale(ttl)
    leftovers, size = await registry.storage.reclaim_leftovers(ttl)
    if purged or leftovers:
        log.info("purged %d expired upload sessions and %d leftovers (%d bytes)", len(purged), leftovers, size)


async def _collect(registry: Services) -> None:
    options = registry.options.gc
    result = await collect(registry.storage, grace=options.grace, delete_untagged=options.delete_untagged)
    log.info("gc: %d trashed, %d restored, %d deleted (%d bytes), %d untagged manifests removed",
             len(result.trashed), len(result.restored), len(result.deleted), result.freed_bytes, len(result.untagged))  # fmt: skip


async def _loop(registry: Services) -> None:
    options = registry.options
    purge_every = min(PURGE_EVERY, max(options.upload_ttl / 4, 1.0))
    gc_every = options.gc.interval
    loop = asyncio.get_running_loop()
    next_purge, next_gc = loop.time() + purge_every, loop.time() + gc_every
    while True:
        await asyncio.sleep(max(0.05, min(next_purge, next_gc if gc_every else next_purge) - loop.time()))
        now = loop.time()
        for due, job in ((now >= next_purge, _purge_uploads), (bool(gc_every) and now >= next_gc, _collect)):
            if not due:
                continue
            try:
                await job(registry)
            except Exception:  # one failed run must not end the housekeeping
                log.exception("%s failed", job.__name__.strip("_"))
        if now >= next_purge:
            next_purge = now + purge_every
        if gc_every and now >= next_gc:
            next_gc = now + gc_every


@contextlib.asynccontextmanager
async def running(registry: Services) -> AsyncIterator[None]:
    """Housekeeping runs in the background while this context is open."""
    task = asyncio.ensure_future(_loop(registry))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
