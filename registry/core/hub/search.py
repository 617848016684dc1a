"""Repository search: one index object in storage, cached per process, ranked per query.

The index (`hub/search/index.json`) holds name, description, stars and visibility of every
repository. Each write also replaces `hub/search/version` with a fresh random value; readers
keep the parsed index and reload it only when that value changed, so a query costs one tiny
read plus an in-memory scan — never a walk of the repositories (S3's one-second modification
times could hide a change, a random version cannot). Writers re-read after writing and retry
when another replica's concurrent write dropped their entry; `rebuild()` (CLI:
`dockyard-registry search reindex`) recomputes the index from the repository settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from storage_backends import ObjectNotFound, StorageBackend

from .. import layout
from .models import RepositorySettings

INDEX_KEY = layout.SEARCH_INDEX
VERSION_KEY = layout.SEARCH_VERSION
WRITE_ATTEMPTS = 3
log = logging.getLogger("dockyard.search")


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
        self._version: bytes | None = None
        self._lock = asyncio.Lock()

    async def _current(self) -> dict[str, Entry]:
        try:
            version = await self.storage.get_bytes(VERSION_KEY)
        except ObjectNotFound:
            version = b""
        if version != self._version:
            try:
                document = json.loads(await self.storage.get_bytes(INDEX_KEY))
            except ObjectNotFound:
                document = {"repositories": []}
            self._entries = {item["name"]: Entry(**item) for item in document["repositories"]}
            self._version = version
        return self._entries

    async def _write(self, entries: dict[str, Entry]) -> None:
        document = {"repositories": [entry.__dict__ for entry in sorted(entries.values(), key=lambda e: e.name)]}
        await self.storage.put_bytes(INDEX_KEY, json.dumps(document, separators=(",", ":")).encode())
        await self.storage.put_bytes(VERSION_KEY, secrets.token_hex(16).encode())
        self._version = None

    async def update(self, settings: RepositorySettings) -> None:
        entry = Entry.of(settings)
        async with self._lock:
            for _attempt in range(WRITE_ATTEMPTS):
                entries = dict(await self._current())
                entries[settings.name] = entry
                await self._write(entries)
                if (await self._current()).get(settings.name) == entry:
                    return
            log.warning("search index entry of %s lost to concurrent writers; run `search reindex`", settings.name)

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
