"""The Hub around the registry: users, tokens, organizations, repository settings and stars,
search, permissions and webhooks, each kept by its own store over the storage backend."""

from __future__ import annotations

from dataclasses import dataclass

from storage_backends import StorageBackend

from .models import Visibility
from .organizations import Organizations
from .records import Records
from .repository_settings import RepositorySettingsStore
from .search import SearchIndex
from .tokens import Tokens
from .users import Users


@dataclass
class Hub:
    users: Users
    tokens: Tokens
    organizations: Organizations
    repositories: RepositorySettingsStore
    search: SearchIndex

    @classmethod
    def over(cls, storage: StorageBackend, default_visibility: Visibility = "private") -> Hub:
        records = Records(storage)
        tokens = Tokens(records)
        search = SearchIndex(storage)
        return cls(
            users=Users(records, tokens),
            tokens=tokens,
            organizations=Organizations(records),
            repositories=RepositorySettingsStore(records, search, default_visibility),
            search=search,
        )
