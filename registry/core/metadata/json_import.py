"""The Hub's records from before the metadata database — JSON objects in the storage backend
(`hub/users/<name>.json`, `hub/orgs/`, `hub/tokens/<user>/<id>.json`, `hub/refresh/`,
`hub/sessions-ended/`, `repositories/<name>/_settings.json` and `_webhooks.json`) — moved
into the database by `dockyard-registry metadata import`.

The import only inserts what the database does not have yet (a second run changes nothing;
nothing changed in the database since is overwritten), and it leaves the JSON objects where
they are. A registry refuses to start on a backend with such records and an empty database,
so nobody silently loses their accounts by upgrading. Once a check found nothing to import,
or an import ran, the database records that (`facts`), and later starts skip the check.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from storage_backends import ObjectNotFound, StorageBackend, StorageError

from .. import layout
from ..hub.models import AccessToken, Organization, User, Webhook
from ..hub.records import account_kind
from ..hub.repository_settings import new_row
from .database import Database
from .sql import insert_into

log = logging.getLogger("dockyard.metadata")
IMPORT_COMMAND = "dockyard-registry metadata import"
Record = TypeVar("Record", bound=BaseModel)
CHECKED_FACT = "json records checked"
PARALLEL_READS = 32


class UnimportedMetadata(Exception):
    """The storage backend holds JSON-era Hub records the (empty) database does not."""


class _JsonRepositorySettings(BaseModel):
    name: str
    visibility: Literal["public", "private"] = "private"
    description: str = ""
    stars: list[str] = []
    created: float = 0.0
    pushed: float | None = None


class _JsonWebhooks(BaseModel):
    webhooks: list[Webhook] = []


@dataclass
class ImportReport:
    imported: dict[str, int] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def count(self, kind: str, inserted: bool) -> None:
        counts = self.imported if inserted else self.present
        counts[kind] = counts.get(kind, 0) + 1

    def parsed(self, records: list[Any], model: type[Record], kind: str) -> Iterator[Record]:
        """The records that are valid `model`s; each one that is not is reported as skipped."""
        for raw in records:
            try:
                yield model.model_validate(raw)
            except ValidationError:
                self.skipped.append(f"{kind} record that does not parse: {str(raw)[:80]}")

    def summary(self) -> str:
        kinds = sorted(set(self.imported) | set(self.present))
        lines = [f"{kind}: {self.imported.get(kind, 0)} imported, {self.present.get(kind, 0)} already there" for kind in kinds]
        lines += [f"skipped: {reason}" for reason in self.skipped]
        return "\n".join(lines or ["no JSON metadata found"])


async def _read_json(storage: StorageBackend, key: str) -> Any:
    try:
        return json.loads(await storage.get_bytes(key))
    except ObjectNotFound:
        return None


async def _gather(items: list[str], read: Callable[[str], Awaitable[Any]]) -> list[Any]:
    slots = asyncio.Semaphore(PARALLEL_READS)

    async def one(item: str) -> Any:
        async with slots:
            return await read(item)

    return await asyncio.gather(*(one(item) for item in items))


async def _repository_names(storage: StorageBackend) -> list[str]:
    return [layout.catalog_name(key) for key in await storage.list(layout.CATALOG)]


async def json_metadata_present(storage: StorageBackend) -> bool:
    """Accounts in the JSON layout, or a repository with JSON settings (checked among the first
    thousand repositories: enough to tell a JSON-era store, cheap enough for every start-up)."""
    if await storage.list(layout.HUB_USERS, limit=1) or await storage.list(layout.HUB_ORGANIZATIONS, limit=1):
        return True
    names = await storage.list(layout.CATALOG, limit=1000)
    found = await _gather([layout.catalog_name(key) for key in names], lambda name: storage.exists(layout.repository_settings(name)))
    return any(found)


async def database_is_empty(database: Database) -> bool:
    async with database.read() as connection:
        for table in ("accounts", "repositories"):
            if await connection.scalar(f"SELECT count(*) FROM {table}"):
                return False
    return True


async def _note_checked(database: Database, outcome: str) -> None:
    async with database.write() as connection:
        await connection.execute(
            "INSERT INTO facts (name, value) VALUES (:name, :value) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            {"name": CHECKED_FACT, "value": outcome},
        )


async def refuse_unimported_metadata(storage: StorageBackend, database: Database) -> None:
    """Raise `UnimportedMetadata` for a JSON-era backend whose records are not in the (empty)
    database. A backend that cannot be reached now is checked at the next start instead (the
    registry starts, and its health check reports the storage)."""
    async with database.read() as connection:
        if await connection.scalar("SELECT value FROM facts WHERE name = :name", {"name": CHECKED_FACT}) is not None:
            return
    try:
        present = await json_metadata_present(storage)
    except StorageError as error:
        log.warning("cannot look for Hub records to import in the storage backend now (%s); checking at the next start", error)
        return
    if present and await database_is_empty(database):
        raise UnimportedMetadata(
            "the storage backend holds Hub accounts or repository settings from before the metadata database, "
            f"and the database ({database.dialect}) is empty: run `{IMPORT_COMMAND}` first"
        )
    await _note_checked(database, "nothing to import" if not present else "records already in the database")


async def import_json_metadata(storage: StorageBackend, database: Database) -> ImportReport:
    report = ImportReport()
    user_names = [name.removesuffix(".json") for name in await storage.list(layout.HUB_USERS) if name.endswith(".json")]
    org_names = [name.removesuffix(".json") for name in await storage.list(layout.HUB_ORGANIZATIONS) if name.endswith(".json")]
    users = await _gather(user_names, lambda name: _read_json(storage, layout.hub_user(name)))
    orgs = await _gather(org_names, lambda name: _read_json(storage, layout.hub_organization(name)))
    token_owners = await storage.list(layout.HUB_TOKENS)
    token_files = [f"{layout.hub_tokens(owner)}/{name}" for owner in token_owners for name in await storage.list(layout.hub_tokens(owner))]
    tokens = await _gather(token_files, lambda key: _read_json(storage, key))
    refresh_keys = [name for name in await storage.list(layout.HUB_REFRESH_TOKENS) if name.endswith(".json")]
    refreshes = await _gather(refresh_keys, lambda name: _read_json(storage, f"{layout.HUB_REFRESH_TOKENS}/{name}"))
    ended_keys = await storage.list(layout.HUB_ENDED_SESSIONS)
    ended = await _gather(ended_keys, lambda name: storage.get_bytes(f"{layout.HUB_ENDED_SESSIONS}/{name}"))
    repository_names = await _repository_names(storage)
    settings = await _gather(repository_names, lambda name: _read_json(storage, layout.repository_settings(name)))
    hooks = await _gather(repository_names, lambda name: _read_json(storage, layout.repository_webhooks(name)))

    async with database.write() as connection:

        async def insert(kind: str, table: str, values: dict[str, Any]) -> bool:
            inserted = await connection.execute(f"{insert_into(table, list(values))} ON CONFLICT DO NOTHING", values) > 0
            report.count(kind, inserted)
            return inserted

        for user in report.parsed(users, User, "a user"):
            await insert("users", "accounts", {"name": user.name, "kind": "user", "password_hash": user.password_hash,
                                             "admin": user.admin, "created": user.created})  # fmt: skip
        for org in report.parsed(orgs, Organization, "an organization"):
            await insert("organizations", "accounts", {"name": org.name, "kind": "org", "admin": False, "created": org.created})
            for member, role in org.members.items():
                if await account_kind(connection, member) == "user":
                    await insert("memberships", "members", {"organization": org.name, "user": member, "role": role})
        for token in report.parsed(tokens, AccessToken, "an access token"):
            if await account_kind(connection, token.user) == "user":
                await insert("access tokens", "access_tokens", token.model_dump())
        for name, raw in zip(refresh_keys, refreshes):
            if raw and await account_kind(connection, raw.get("user", "")) == "user":
                await insert("refresh tokens", "refresh_tokens", {"token_hash": name.removesuffix(".json"), "user": raw["user"],
                                                                "password": raw["password"], "access_token": raw.get("token_id"),
                                                                "created": time.time()})  # fmt: skip
        for name, expires in zip(ended_keys, ended):
            await insert("ended sessions", "ended_sessions", {"nonce_hash": name, "expires": float(expires.decode() or 0)})
        for raw in settings:
            if raw is None:
                continue
            record = _JsonRepositorySettings.model_validate(raw)
            values = {"description": record.description, "pushed": record.pushed}
            if record.created:
                values["created"] = record.created
            await insert("repositories", "repositories", new_row(record.name, record.visibility, values))
            for starrer in record.stars:
                if await account_kind(connection, starrer) == "user":
                    await insert("stars", "stars", {"repository": record.name, "user": starrer, "created": record.created or time.time()})
            await connection.execute(
                "UPDATE repositories SET star_count = (SELECT count(*) FROM stars WHERE repository = :name) WHERE name = :name", {"name": record.name}
            )
        for name, raw in zip(repository_names, hooks):
            for hook in _JsonWebhooks.model_validate(raw or {}).webhooks:
                await insert("webhooks", "webhooks", {"id": hook.id, "repository": name, "url": hook.url, "events": ",".join(hook.events),
                                                    "secret": hook.secret, "created": hook.created})  # fmt: skip
    await _note_checked(database, f"imported at {time.time():.0f}")
    await database.analyze()
    return report
