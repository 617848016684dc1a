"""Pull and push counts per repository and tag, as Docker Hub shows them.

Counting must not slow a pull: `pulled` only adds to an in-memory tally; while `running()` is
open a background task writes the tallies every `interval` seconds as one increment per
repository and tag (`count = count + n`, so replicas never overwrite each other's counts), and
once more on stop. A replica killed with -9 loses at most `interval` seconds of counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from ..events import Event
from ..metadata import Database
from ..metadata.schema import repositories, tag_activity

log = logging.getLogger("dockyard.activity")


@dataclass
class Tally:
    pulls: int = 0
    last_pulled: float | None = None
    pushes: int = 0
    last_pushed: float | None = None

    def add(self, *, pulls: int = 0, pushes: int = 0, at: float) -> None:
        self.pulls += pulls
        self.pushes += pushes
        if pulls:
            self.last_pulled = at
        if pushes:
            self.last_pushed = at


class Activity:
    def __init__(self, database: Database, interval: float = 2.0) -> None:
        self.database = database
        self.interval = interval
        self._repositories: dict[str, Tally] = {}
        self._tags: dict[tuple[str, str], Tally] = {}

    def pulled(self, repository: str, tag: str | None) -> None:
        """A manifest GET (Docker Hub's pull); returns at once."""
        self._count(repository, tag, pulls=1)

    def notify(self, event: Event) -> None:
        """Listener of `Manifests`: a push counts (deletes do not)."""
        if event.kind == "push":
            self._count(event.repository, event.tag, pushes=1)

    def _count(self, repository: str, tag: str | None, **counts: int) -> None:
        now = time.time()
        self._repositories.setdefault(repository, Tally()).add(at=now, **counts)
        if tag is not None:
            self._tags.setdefault((repository, tag), Tally()).add(at=now, **counts)

    async def flush(self) -> None:
        """Write what was counted since the last flush; on failure the counts are kept for the next."""
        repos, tags = self._repositories, self._tags
        if not repos and not tags:
            return
        self._repositories, self._tags = {}, {}
        try:
            async with self.database.write() as connection:
                for name, tally in sorted(repos.items()):
                    await connection.execute(update(repositories).where(repositories.c.name == name).values(_repository_changes(tally)))
                for (name, tag), tally in sorted(tags.items()):
                    insert = self.database.insert(tag_activity).values(
                        repository=name, tag=tag, pull_count=tally.pulls, last_pulled=tally.last_pulled,
                        push_count=tally.pushes, last_pushed=tally.last_pushed,
                    )  # fmt: skip
                    changes: dict[str, Any] = {"pull_count": tag_activity.c.pull_count + tally.pulls, "push_count": tag_activity.c.push_count + tally.pushes}
                    if tally.last_pulled is not None:
                        changes["last_pulled"] = tally.last_pulled
                    if tally.last_pushed is not None:
                        changes["last_pushed"] = tally.last_pushed
                    keys = [tag_activity.c.repository, tag_activity.c.tag]
                    await connection.execute(insert.on_conflict_do_update(index_elements=keys, set_=changes))
        except Exception:
            for name, tally in repos.items():
                self._merge(self._repositories, name, tally)
            for key, tally in tags.items():
                self._merge(self._tags, key, tally)
            raise

    @staticmethod
    def _merge(into: dict[Any, Tally], key: Any, tally: Tally) -> None:
        kept = into.setdefault(key, Tally())
        kept.pulls += tally.pulls
        kept.pushes += tally.pushes
        kept.last_pulled = max(filter(None, (kept.last_pulled, tally.last_pulled)), default=None)
        kept.last_pushed = max(filter(None, (kept.last_pushed, tally.last_pushed)), default=None)

    async def tags(self, repository: str) -> dict[str, Tally]:
        """Each tag's counts as written so far."""
        async with self.database.read() as connection:
            rows = await connection.execute(tag_activity.select().where(tag_activity.c.repository == repository))
            return {row.tag: Tally(row.pull_count, row.last_pulled, row.push_count, row.last_pushed) for row in rows}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Counts are written in the background while open, and once more on leaving (a flush
        is never cut off halfway: the loop is told to stop, not cancelled)."""
        stop = asyncio.Event()
        task = asyncio.ensure_future(self._loop(stop))
        try:
            yield
        finally:
            stop.set()
            await task

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("activity: counts not written%s", "" if stop.is_set() else "; retrying")


def _repository_changes(tally: Tally) -> dict[str, object]:
    changes: dict[str, object] = {}
    if tally.pulls:
        changes.update(pull_count=repositories.c.pull_count + tally.pulls, last_pulled=tally.last_pulled)
    if tally.pushes:
        changes.update(push_count=repositories.c.push_count + tally.pushes, pushed=tally.last_pushed)
    return changes
