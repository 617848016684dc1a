"""The Hub's tables (SQLAlchemy Core), as the newest migration leaves them: the columns the
stores' SQL is written against.

The migrations in `migrations/versions` are the schema's history and what creates it; a test
checks the two agree. Only the migrating child process and tests import this module.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Computed, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

SEARCH_TEXT = "lower(name || '|' || description)"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Users and organizations share one namespace: one table, so the primary key settles a race
# between a user and an organization taking the same name.
accounts = Table(
    "accounts",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),  # "user" | "org"
    Column("password_hash", Text),  # users only (bcrypt)
    Column("admin", Boolean, nullable=False, default=False),
    Column("created", Float, nullable=False),
    Column("sessions_after", Float),  # users: web sessions issued before this time are ended
)

members = Table(
    "members",
    metadata,
    Column("organization", String(64), ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True),
    Column("user", String(64), ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True),
    Column("role", String(8), nullable=False),  # read | write | admin
)
Index(None, members.c.user)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user", String(64), ForeignKey("accounts.name", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created", Float, nullable=False),
    Column("last_used", Float),
    Column("scope", String(16), nullable=False, server_default="admin"),  # read | write | delete | admin
)
Index(None, access_tokens.c.user)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user", String(64), ForeignKey("accounts.name", ondelete="CASCADE"), nullable=False),
    Column("password", String(64), nullable=False),  # SHA-256 of the password hash it was issued under
    Column("access_token", String(32)),  # the personal access token it was issued for, if any
    Column("created", Float, nullable=False),
)

ended_sessions = Table(
    "ended_sessions",
    metadata,
    Column("nonce_hash", String(64), primary_key=True),
    Column("expires", Float, nullable=False),
)
Index(None, ended_sessions.c.expires)

repositories = Table(
    "repositories",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("namespace", String(64)),  # first path component; None for single-component names
    Column("short_name", String(255), nullable=False),  # last path component, which search ranks first
    Column("visibility", String(8), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("full_description", Text, nullable=False, default=""),
    Column("star_count", Integer, nullable=False, default=0),
    Column("pull_count", Integer, nullable=False, default=0),
    Column("last_pulled", Float),
    Column("push_count", Integer, nullable=False, default=0),
    Column("pushed", Float),
    Column("created", Float, nullable=False),
    # what a search query is matched against, kept by the database itself ('|' is in no name)
    Column("search_text", Text, Computed(SEARCH_TEXT, persisted=True)),
)
Index(None, repositories.c.namespace)
Index(None, repositories.c.star_count)

stars = Table(
    "stars",
    metadata,
    Column("repository", String(255), ForeignKey("repositories.name", ondelete="CASCADE"), primary_key=True),
    Column("user", String(64), ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True),
    Column("created", Float, nullable=False),
)
Index(None, stars.c.user)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("repository", String(255), nullable=False),
    Column("url", Text, nullable=False),
    Column("events", String(64), nullable=False),  # comma-separated: push,delete
    Column("secret", Text),
    Column("created", Float, nullable=False),
)
Index(None, webhooks.c.repository)

# -- added by migration 0002 ---------------------------------------------------------------------
tag_activity = Table(
    "tag_activity",
    metadata,
    Column("repository", String(255), primary_key=True),
    Column("tag", String(128), primary_key=True),
    Column("pull_count", Integer, nullable=False, default=0),
    Column("last_pulled", Float),
    Column("push_count", Integer, nullable=False, default=0),
    Column("last_pushed", Float),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("webhook", String(32), ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("status", Integer),
    Column("error", Text),
    Column("delivered", Boolean, nullable=False, default=False),
    Column("done", Boolean, nullable=False, default=False),
    Column("created", Float, nullable=False),
)
Index(None, webhook_deliveries.c.webhook, webhook_deliveries.c.created)

# A sliding log per limited key (a client's pulls, a client's failed sign-ins): shared by
# every replica, so a limit holds for the whole deployment.
rate_events = Table(
    "rate_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False),
    Column("at", Float, nullable=False),
)
Index(None, rate_events.c.key, rate_events.c.at)

# Facts about the database itself, by name (e.g. when the storage backend was last checked for
# JSON-era records that need `metadata import`).
facts = Table(
    "facts",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
