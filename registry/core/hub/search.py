"""Repository search in the metadata database, ranked as Docker Hub ranks names.

Lower rank is better: 0 the name or its last component is the query, 1 either starts with it,
2 the name contains it, 3 only the description does; ties go to more stars, then the name.
Substring matching is indexed: SQLite through an FTS5 trigram table the schema's triggers keep
in step with `repositories`, PostgreSQL through pg_trgm GIN indexes on the name and the
lower-cased description. What a searcher may see is part of the query (`Audience`), so the
counts and pages are right without loading anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, false, func, literal, literal_column, or_, select, text, true

from ..metadata import Database
from ..metadata.schema import repositories
from .models import RepositorySettings
from .repository_settings import settings_of

FTS_MINIMUM = 3
"""Trigram indexes find substrings of at least three characters; shorter queries scan."""


@dataclass(frozen=True)
class Audience:
    """The repositories a searcher may see: all of them, or the public ones plus every one in
    `namespaces` (their own and their organizations')."""

    everything: bool = False
    namespaces: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SearchPage:
    total: int
    results: list[RepositorySettings]


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SearchIndex:
    def __init__(self, database: Database) -> None:
        self.database = database

    def _matching(self, query: str) -> ColumnElement[bool]:
        if not query:
            return true()
        contains = f"%{_like(query)}%"
        if self.database.dialect == "sqlite" and len(query) >= FTS_MINIMUM:
            phrase = '"' + query.replace('"', '""') + '"'
            fts = text("repository_search MATCH :phrase").bindparams(phrase=phrase)
            matched: Select[Any] = select(literal_column("rowid")).select_from(text("repository_search")).where(fts)
            return literal_column("repositories.rowid").in_(matched)
        return or_(repositories.c.name.like(contains, escape="\\"), func.lower(repositories.c.description).like(contains, escape="\\"))

    @staticmethod
    def _visible(audience: Audience) -> ColumnElement[bool]:
        if audience.everything:
            return true()
        own = repositories.c.namespace.in_(sorted(audience.namespaces)) if audience.namespaces else false()
        return or_(repositories.c.visibility == "public", own)

    @staticmethod
    def _rank(query: str) -> ColumnElement[int]:
        if not query:
            return literal(4)
        starts = f"{_like(query)}%"
        contains = f"%{starts}"
        name, short = repositories.c.name, repositories.c.short_name
        return case(
            (or_(name == query, short == query), 0),
            (or_(name.like(starts, escape="\\"), short.like(starts, escape="\\")), 1),
            (name.like(contains, escape="\\"), 2),
            else_=3,
        )

    async def search(self, query: str, *, page: int, page_size: int, audience: Audience) -> SearchPage:
        query = query.strip().lower()
        where = and_(self._matching(query), self._visible(audience))
        rank = self._rank(query).label("rank")
        listing = (
            select(repositories, rank)
            .where(where)
            .order_by(rank, repositories.c.star_count.desc(), repositories.c.name)
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
        async with self.database.read() as connection:
            total = (await connection.execute(select(func.count()).select_from(repositories).where(where))).scalar_one()
            rows = (await connection.execute(listing)).mappings().all()
        return SearchPage(total, [settings_of(row) for row in rows])
