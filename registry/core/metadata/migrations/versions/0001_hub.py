"""Accounts, organizations' members, tokens, ended sessions, repository settings, stars,
webhooks, and the search index (SQLite: an FTS5 trigram table kept by triggers; PostgreSQL: a
pg_trgm GIN index of the generated `search_text`).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("password_hash", sa.Text),
        sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "members",
        sa.Column("organization", sa.String(64), sa.ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("user", sa.String(64), sa.ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.String(8), nullable=False),
    )
    op.create_index("ix_members_user", "members", ["user"])
    op.create_table(
        "access_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user", sa.String(64), sa.ForeignKey("accounts.name", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("last_used", sa.Float),
    )
    op.create_index("ix_access_tokens_user", "access_tokens", ["user"])
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(64), sa.ForeignKey("accounts.name", ondelete="CASCADE"), nullable=False),
        sa.Column("password", sa.String(64), nullable=False),
        sa.Column("access_token", sa.String(32)),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "ended_sessions",
        sa.Column("nonce_hash", sa.String(64), primary_key=True),
        sa.Column("expires", sa.Float, nullable=False),
    )
    op.create_index("ix_ended_sessions_expires", "ended_sessions", ["expires"])
    op.create_table(
        "repositories",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("namespace", sa.String(64)),
        sa.Column("short_name", sa.String(255), nullable=False),
        sa.Column("visibility", sa.String(8), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("full_description", sa.Text, nullable=False, server_default=""),
        sa.Column("star_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pushed", sa.Float),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("search_text", sa.Text, sa.Computed("lower(name || '|' || description)", persisted=True)),
    )
    op.create_index("ix_repositories_namespace", "repositories", ["namespace"])
    op.create_index("ix_repositories_star_count", "repositories", ["star_count"])
    op.create_table(
        "stars",
        sa.Column("repository", sa.String(255), sa.ForeignKey("repositories.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("user", sa.String(64), sa.ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("ix_stars_user", "stars", ["user"])
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events", sa.String(64), nullable=False),
        sa.Column("secret", sa.Text),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("ix_webhooks_repository", "webhooks", ["repository"])
    _search_index()


def _search_index() -> None:
    """Substring search on name and description without a scan of every repository."""
    if op.get_context().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_repositories_search_text_trgm ON repositories USING gin (search_text gin_trgm_ops)")
        return
    op.execute(
        "CREATE VIRTUAL TABLE repository_search USING fts5("
        "name, description, content='repositories', content_rowid='rowid', tokenize='trigram')"
    )
    op.execute(
        "CREATE TRIGGER repositories_search_insert AFTER INSERT ON repositories BEGIN "
        "INSERT INTO repository_search(rowid, name, description) VALUES (new.rowid, new.name, new.description); END"
    )
    op.execute(
        "CREATE TRIGGER repositories_search_delete AFTER DELETE ON repositories BEGIN "
        "INSERT INTO repository_search(repository_search, rowid, name, description) "
        "VALUES ('delete', old.rowid, old.name, old.description); END"
    )
    op.execute(
        "CREATE TRIGGER repositories_search_update AFTER UPDATE OF name, description ON repositories BEGIN "
        "INSERT INTO repository_search(repository_search, rowid, name, description) "
        "VALUES ('delete', old.rowid, old.name, old.description); "
        "INSERT INTO repository_search(rowid, name, description) VALUES (new.rowid, new.name, new.description); END"
    )


def downgrade() -> None:
    for table in ("webhooks", "stars", "repositories", "ended_sessions", "refresh_tokens", "access_tokens", "members", "accounts"):
        op.drop_table(table)
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS repository_search")
