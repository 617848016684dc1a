"""Hub records kept as JSON objects in the storage backend, one object per record."""

from __future__ import annotations

import hashlib
from typing import TypeVar

from pydantic import BaseModel

from storage_backends import ObjectNotFound, StorageBackend

from .. import layout
from .models import validate_account_name

Model = TypeVar("Model", bound=BaseModel)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Records:
    def __init__(self, storage: StorageBackend) -> None:
        self.storage = storage

    async def load(self, key: str, model: type[Model]) -> Model | None:
        try:
            return model.model_validate_json(await self.storage.get_bytes(key))
        except ObjectNotFound:
            return None

    async def save(self, key: str, record: BaseModel) -> None:
        await self.storage.put_bytes(key, record.model_dump_json().encode())

    async def account(self, kind: str, name: str, model: type[Model]) -> Model | None:
        """A user (`kind` "users") or organization ("orgs"); None for a name no account can have,
        so no name ever becomes a storage path."""
        if not is_account_name(name):
            return None
        return await self.load(layout.hub_account(kind, name), model)

    async def name_taken(self, name: str) -> bool:
        """Users and organizations share one namespace."""
        return await self.storage.exists(layout.hub_account("users", name)) or await self.storage.exists(
            layout.hub_account("orgs", name)
        )


def is_account_name(name: str) -> bool:
    try:
        validate_account_name(name)
    except ValueError:
        return False
    return True
