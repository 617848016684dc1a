"""SQL as the stores write it, and what both drivers answer with.

Statements are plain SQL text with named parameters (`:name`), the one syntax SQLite and
PostgreSQL share apart from a few clearly marked branches (search, locks). A list parameter
stands for one parameter per item (`name IN (:names)`); `values_clause` writes a multi-row
INSERT. For asyncpg the names become `$1, $2, ...` (`numbered`). Rows are mappings by column
name (sqlite3.Row, asyncpg.Record); SQLite has no boolean type, so readers of a boolean column
pass it through `bool()`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from functools import lru_cache
from typing import Any, Protocol

Params = Mapping[str, Any]


class Row(Protocol):
    """A row of a result: its columns by name or by position (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...


_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
"""`:name`, not PostgreSQL's `::type` cast and not a time like `12:30` inside a word."""


class Connection(Protocol):
    """One database connection, inside a transaction (`Database.write`) or not (`Database.read`)."""

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; the number of rows it inserted, changed or deleted."""

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        """Run one statement once per parameter set (one round trip where the driver can)."""

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Every row a query returns."""

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        """The first row, or None."""

    async def scalar(self, sql: str, params: Params | None = None) -> Any:
        """The first column of the first row, or None when there is no row."""

    async def scalars(self, sql: str, params: Params | None = None) -> list[Any]:
        """The first column of every row."""


class Transactions(Protocol):
    """What a driver offers `Database`: autocommit reads and serialised write transactions."""

    def read(self) -> AbstractAsyncContextManager[Connection]: ...

    def write(self) -> AbstractAsyncContextManager[Connection]: ...

    async def close(self) -> None: ...


def expand_lists(sql: str, params: Params) -> tuple[str, Params]:
    """A list or tuple value becomes one parameter per item: `IN (:names)` with two names is
    `IN (:names_0, :names_1)`. An empty list is an error: `IN ()` is not SQL."""
    if not any(isinstance(value, list | tuple) for value in params.values()):
        return sql, params
    expanded: dict[str, Any] = {}
    for name, value in params.items():
        if not isinstance(value, list | tuple):
            expanded[name] = value
            continue
        if not value:
            raise ValueError(f"the list parameter :{name} is empty")
        items = {f"{name}_{index}": item for index, item in enumerate(value)}
        expanded.update(items)
        placeholder = ", ".join(f":{item}" for item in items)
        sql = re.sub(rf"(?<![:\w]):{name}\b", placeholder, sql)
    return sql, expanded


@lru_cache(maxsize=1024)
def numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` with `:name` written as `$n` (asyncpg's style), and the names in number order; a
    name used twice keeps its number."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    return _PARAMETER.sub(number, sql), tuple(numbers)


def values_clause(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """`(:c_0_0, :c_1_0), (:c_0_1, :c_1_1), ...` for a multi-row INSERT of `rows` (each a
    mapping with every one of `columns`), and the parameters it names."""
    params: dict[str, Any] = {}
    groups = []
    for index, row in enumerate(rows):
        names = []
        for position, column in enumerate(columns):
            name = f"c_{position}_{index}"
            params[name] = row[column]
            names.append(f":{name}")
        groups.append(f"({', '.join(names)})")
    return ", ".join(groups), params


LIKE_ESCAPE = "ESCAPE '\\'"
"""What follows `LIKE :pattern` when the pattern comes from `like_escaped`."""


def like_escaped(value: str) -> str:
    """`value` matched literally by LIKE (its `%`, `_` and backslashes escaped)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def column_list(columns: Sequence[str]) -> str:
    """Column names for an INSERT, quoted (`user` is a reserved word in PostgreSQL)."""
    return ", ".join(f'"{column}"' for column in columns)


def insert_into(table: str, columns: Sequence[str]) -> str:
    """`INSERT INTO table ("a", "b") VALUES (:a, :b)`: one row, its parameters named as its columns."""
    return f"INSERT INTO {table} ({column_list(columns)}) VALUES ({', '.join(f':{column}' for column in columns)})"


def changed_rows(status: str) -> int:
    """The row count in a PostgreSQL command tag: `INSERT 0 3`, `UPDATE 1`, `DELETE 0`."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0
