"""The Hub's metadata (accounts, tokens, repository settings, stars, webhooks, search, counts,
shared rate limits) in a database: SQLite embedded by default, PostgreSQL for replicas.
Blobs, manifests and tags stay in the storage backend, the source of truth for content."""

from .database import Database, MetadataUrlError, parse_url
from .sql import Connection, Row

__all__ = ["Connection", "Database", "MetadataUrlError", "Row", "parse_url"]
