"""Pull and push counts per repository and tag, as Docker Hub shows them.

Counting must not slow a pull: `pulled` only adds to an in-memory tally; while `running()` is
open a background task writes the tallies every `interval` seconds as increments (`count =
count + n`, so replicas never overwrite each other's counts): one executemany UPDATE for every
repository and one multi-row upsert per 500 tags, so a flush costs a few round trips however
many repositories were pushed to. And once more on stop. A replica killed with -9 loses at most `interval` seconds of counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..events import Event
from ..metadata import Database
from ..metadata.sql import column_list, values_clause
from .repository_settings import RepositorySettingsStore

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
    def __init__(self, database: Database, interval: float = 2.0, settings: RepositorySettingsStore | None = None) -> None:
        self.database = database
        self.interval = interval
        self.settings = settings
        """Where a pushed repository gets its row if it has none yet (one whose background
        creation a killed process never wrote: `RepositorySettingsStore.create_soon`)."""
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
                pushed = [name for name, tally in sorted(repos.items()) if tally.pushes]
                if pushed and self.settings is not None:
                    await self.settings.add_missing(connection, pushed)
                if repos:
                    await connection.execute_many(REPOSITORY_INCREMENT, [_repository_row(name, tally) for name, tally in sorted(repos.items())])
                rows = [_tag_row(name, tag, tally) for (name, tag), tally in sorted(tags.items())]
                for start in range(0, len(rows), ROWS_PER_INSERT):
                    values, params = values_clause(TAG_COLUMNS, rows[start : start + ROWS_PER_INSERT])
                    await connection.execute(TAG_UPSERT.format(values=values), params)
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
            rows = await connection.fetch(
                "SELECT tag, pull_count, last_pulled, push_count, last_pushed FROM tag_activity WHERE repository = :repository", {"repository": repository}
            )
            return {row["tag"]: Tally(row["pull_count"], row["last_pulled"], row["push_count"], row["last_pushed"]) for row in rows}

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


ROWS_PER_INSERT = 500
"""Tags per multi-row INSERT: 3,000 parameters, well under SQLite's limit of 32,766."""

REPOSITORY_INCREMENT = (
    "UPDATE repositories SET pull_count = pull_count + :pulls, push_count = push_count + :pushes, "
    "last_pulled = coalesce(:last_pulled, last_pulled), pushed = coalesce(:pushed, pushed) WHERE name = :name"
)
"""Every repository's counts in one executemany: one round trip to the database per flush."""

TAG_COLUMNS = ("repository", "tag", "pull_count", "last_pulled", "push_count", "last_pushed")
TAG_UPSERT = (
    f"INSERT INTO tag_activity ({column_list(TAG_COLUMNS)}) VALUES {{values}} ON CONFLICT (repository, tag) DO UPDATE SET "
    "pull_count = tag_activity.pull_count + excluded.pull_count, push_count = tag_activity.push_count + excluded.push_count, "
    "last_pulled = coalesce(excluded.last_pulled, tag_activity.last_pulled), last_pushed = coalesce(excluded.last_pushed, tag_activity.last_pushed)"
)
"""One multi-row INSERT adding each tag's counts to what is stored (or storing them)."""


def _repository_row(name: str, tally: Tally) -> dict[str, object]:
    return {"name": name, "pulls": tally.pulls, "pushes": tally.pushes, "last_pulled": tally.last_pulled, "pushed": tally.last_pushed}


def _tag_row(name: str, tag: str, tally: Tally) -> dict[str, Any]:
    return {
        "repository": name, "tag": tag, "pull_count": tally.pulls, "last_pulled": tally.last_pulled,
        "push_count": tally.pushes, "last_pushed": tally.last_pushed,
    }  # fmt: skip
