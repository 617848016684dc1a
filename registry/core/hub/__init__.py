"""The Hub around the registry: users, tokens, organizations, repository settings and stars,
search, permissions and webhooks, each a store over the metadata database."""

from __future__ import annotations

from dataclasses import dataclass

from ..metadata import Database
from .models import Visibility
from .organizations import Organizations
from .repository_settings import RepositorySettingsStore
from .search import SearchIndex
from .tokens import Tokens
from .users import Users


@dataclass
class Hub:
    database: Database
    users: Users
    tokens: Tokens
    organizations: Organizations
    repositories: RepositorySettingsStore
    search: SearchIndex

    @classmethod
    def over(cls, database: Database, default_visibility: Visibility = "private") -> Hub:
        tokens = Tokens(database)
        return cls(
            database=database,
            users=Users(database, tokens),
            tokens=tokens,
            organizations=Organizations(database),
            repositories=RepositorySettingsStore(database, default_visibility),
            search=SearchIndex(database),
        )
