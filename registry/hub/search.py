"""Repository search: one index object in storage, cached per process, ranked per query.

The index (`hub/search/index.json`) holds name, description, stars and visibility of every
repository. Writers update it under a process lock; readers keep the parsed index and reload
it only when the object's size or modification time changed, so a query costs one `stat`
plus an in-memory scan — never a walk of the repositories. Concurrent writers on different
replicas can race; `rebuild()` (CLI: `dockyard-registry search reindex`) recomputes it from
the repository settings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from storage_backends import ObjectNotFound, StorageBackend

from .models import RepositorySettings

INDEX_KEY = "hub/search/index.json"


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    stars: int
    public: bool

    @classmethod
    def of(cls, settings: RepositorySettings) -> Entry:
        return cls(settings.name, settings.description, len(settings.stars), settings.visibility == "public")


@dataclass(frozen=True)
class SearchPage:
    total: int
    results: list[Entry]


def rank(entry: Entry, query: str) -> int | None:
    """Lower is better; None when the entry does not match."""
    name = entry.name
    short = name.rsplit("/", 1)[-1]
    if not query:
        return 4
    if query in (name, short):
        return 0
    if name.startswith(query) or short.startswith(query):
        return 1
    if query in name:
        return 2
    if query in entry.description.lower():
        return 3
    return None


class SearchIndex:
    def __init__(self, storage: StorageBackend) -> None:
        self.storage = storage
        self._entries: dict[str, Entry] = {}
        self._version: tuple[int, float] | None = None
        self._lock = asyncio.Lock()

    async def _current(self) -> dict[str, Entry]:
        try:
            info = await self.storage.stat(INDEX_KEY)
        except ObjectNotFound:
            self._entries, self._version = {}, None
            return self._entries
        version = (info.size, info.modified)
        if version != self._version:
            document = json.loads(await self.storage.get_bytes(INDEX_KEY))
            self._entries = {item["name"]: Entry(**item) for item in document["repositories"]}
            self._version = version
        return self._entries

    async def _write(self, entries: dict[str, Entry]) -> None:
        document = {"repositories": [entry.__dict__ for entry in sorted(entries.values(), key=lambda e: e.name)]}
        await self.storage.put_bytes(INDEX_KEY, json.dumps(document, separators=(",", ":")).encode())
        self._version = None

    async def update(self, settings: RepositorySettings) -> None:
        async with self._lock:
            entries = dict(await self._current())
            entries[settings.name] = Entry.of(settings)
            await self._write(entries)

    async def remove(self, name: str) -> None:
        async with self._lock:
            entries = dict(await self._current())
            if entries.pop(name, None) is not None:
                await self._write(entries)

    async def rebuild(self, settings: list[RepositorySettings]) -> None:
        async with self._lock:
            await self._write({item.name: Entry.of(item) for item in settings})

    async def search(
        self, query: str, *, page: int, page_size: int, visible: Callable[[Entry], Awaitable[bool]]
    ) -> SearchPage:
        query = query.strip().lower()
        ranked: list[tuple[int, int, str, Entry]] = []
        for entry in (await self._current()).values():
            score = rank(entry, query)
            if score is not None and (entry.public or await visible(entry)):
                ranked.append((score, -entry.stars, entry.name, entry))
        ranked.sort(key=lambda item: item[:3])
        start = (page - 1) * page_size
        return SearchPage(len(ranked), [item[3] for item in ranked[start : start + page_size]])
