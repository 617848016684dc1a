"""Each repository's Hub settings (visibility, descriptions), stars and activity counts, one row
per repository in the `repositories` table (which the search index follows), stars one row per
user in `stars`. Every change is a single-row statement: concurrent changes from any replica
never overwrite each other."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..metadata import Connection, Database, Row
from ..metadata.sql import column_list, insert_into, values_clause
from .errors import NotFound
from .models import RepositorySettings, Visibility

log = logging.getLogger("dockyard.hub")

SETTINGS_COLUMNS = frozenset({"visibility", "description", "full_description"})


ROWS_PER_INSERT = 500
"""Repositories per multi-row INSERT (a few thousand parameters: far under SQLite's limit)."""
NEW_COLUMNS = ("name", "namespace", "short_name", "visibility", "description", "full_description", "created")
"""What `new_row` fills in (the counts start at the columns' defaults)."""
SETTINGS = "SELECT * FROM repositories WHERE name = :name"


def _log_failure(writer: asyncio.Future[None]) -> None:
    if not writer.cancelled() and writer.exception() is not None:
        log.error("repository settings not written yet (retried at the next use of the database): %s", writer.exception())


def settings_of(row: Row) -> RepositorySettings:
    return RepositorySettings.model_construct(**{name: row[name] for name in RepositorySettings.model_fields})


def new_row(name: str, visibility: Visibility, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The columns of a repository seen for the first time (`values` override the defaults)."""
    return {
        "name": name,
        "namespace": name.split("/", 1)[0] if "/" in name else None,
        "short_name": name.rsplit("/", 1)[-1],
        "visibility": visibility,
        "description": "",
        "full_description": "",
        "created": time.time(),
    } | (values or {})


class RepositorySettingsStore:
    def __init__(self, database: Database, default_visibility: Visibility = "private") -> None:
        self.database = database
        self.default_visibility = default_visibility
        self._pending: set[str] = set()
        self._writer: asyncio.Future[None] | None = None
        database.settle_first(self.settle)

    async def get(self, name: str) -> RepositorySettings | None:
        async with self.database.read() as connection:
            return await _load(connection, name)

    async def many(self, names: list[str]) -> dict[str, RepositorySettings]:
        """Settings of each named repository that has them, in one query."""
        if not names:
            return {}
        async with self.database.read() as connection:
            rows = await connection.fetch("SELECT * FROM repositories WHERE name IN (:names)", {"names": names})
            return {row["name"]: settings_of(row) for row in rows}

    async def ensure(self, name: str) -> None:
        """A repository has settings, created with the default visibility on its first push
        (one INSERT that does nothing when they exist; nothing read back)."""
        async with self.database.write() as connection:
            await self.add_missing(connection, [name])

    def create_soon(self, name: str) -> None:
        """`ensure(name)` in the background, for a repository a push has just created: the push
        does not wait for the database (one INSERT was a quarter of a dedup push's server CPU
        under four concurrent pushers on one worker), and names that arrive together are
        written together. Every read or write of the database in this process waits for it
        first (`Database.settle_first`); another process may miss the row for the few
        milliseconds the write takes. A process killed meanwhile loses it; the next activity
        flush after a push to the repository creates it then (`Activity`)."""
        self._pending.add(name)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._create_pending())
            self._writer.add_done_callback(_log_failure)

    async def settle(self) -> None:
        """Every repository passed to `create_soon` in this process has its row (raises when
        the database cannot be written: the names stay pending for the next try)."""
        if self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._pending:
            await self._create_pending()

    async def _create_pending(self) -> None:
        names, self._pending = sorted(self._pending), set()
        if not names:
            return
        try:
            async with self.database.write(settle=False) as connection:
                await self.add_missing(connection, names)
        except BaseException:
            self._pending.update(names)
            raise

    async def add_missing(self, connection: Connection, names: list[str]) -> None:
        """In `connection`'s transaction: default settings for those of `names` that have none."""
        rows = [new_row(name, self.default_visibility) for name in names]
        for start in range(0, len(rows), ROWS_PER_INSERT):
            values, params = values_clause(NEW_COLUMNS, rows[start : start + ROWS_PER_INSERT])
            await connection.execute(f"INSERT INTO repositories ({column_list(NEW_COLUMNS)}) VALUES {values} ON CONFLICT DO NOTHING", params)

    async def update(self, name: str, **changes: Any) -> RepositorySettings:
        """Change some of visibility, description, full_description (and only those columns),
        creating the repository's settings when it has none yet."""
        unknown = set(changes) - SETTINGS_COLUMNS
        if unknown:
            raise TypeError(f"not repository settings: {sorted(unknown)}")
        async with self.database.write() as connection:
            values = {key: value for key, value in changes.items() if value is not None}
            row = new_row(name, self.default_visibility, values)
            assignments = ", ".join(f"{column} = excluded.{column}" for column in values) or "name = excluded.name"
            await connection.execute(
                f"{insert_into('repositories', NEW_COLUMNS)} ON CONFLICT (name) DO UPDATE SET {assignments}",
                row,
            )
            settings = await _load(connection, name)
        assert settings is not None
        return settings

    async def star(self, name: str, user: str, starred: bool) -> RepositorySettings:
        """`user` stars (or un-stars) the repository; the count moves only when a star row came or went."""
        async with self.database.write() as connection:
            star = {"repository": name, "user": user, "created": time.time()}
            if starred:
                changed = await connection.execute(
                    'INSERT INTO stars (repository, "user", created) VALUES (:repository, :user, :created) ON CONFLICT DO NOTHING', star
                )
            else:
                changed = await connection.execute('DELETE FROM stars WHERE repository = :repository AND "user" = :user', star)
            if changed:
                await connection.execute(
                    "UPDATE repositories SET star_count = star_count + :step WHERE name = :name", {"name": name, "step": 1 if starred else -1}
                )
            settings = await _load(connection, name)
        if settings is None:
            raise NotFound(f"no repository {name!r}")
        return settings

    async def starred(self, name: str, user: str) -> bool:
        async with self.database.read() as connection:
            found = await connection.fetch_one('SELECT "user" FROM stars WHERE repository = :name AND "user" = :user', {"name": name, "user": user})
            return found is not None

    async def forget(self, name: str) -> None:
        """Everything the Hub knows of a deleted repository: settings, stars, tag counts, webhooks
        (and their deliveries)."""
        async with self.database.write() as connection:
            for table, column in (("webhooks", "repository"), ("tag_activity", "repository"), ("stars", "repository"), ("repositories", "name")):
                await connection.execute(f"DELETE FROM {table} WHERE {column} = :name", {"name": name})


async def _load(connection: Connection, name: str) -> RepositorySettings | None:
    row = await connection.fetch_one(SETTINGS, {"name": name})
    return settings_of(row) if row else None
