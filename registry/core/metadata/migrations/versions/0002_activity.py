"""Pull and push counts per repository and tag, webhook delivery log, shared rate limits, facts.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("repositories") as table:
        table.add_column(sa.Column("pull_count", sa.Integer, nullable=False, server_default="0"))
        table.add_column(sa.Column("last_pulled", sa.Float))
        table.add_column(sa.Column("push_count", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "tag_activity",
        sa.Column("repository", sa.String(255), primary_key=True),
        sa.Column("tag", sa.String(128), primary_key=True),
        sa.Column("pull_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_pulled", sa.Float),
        sa.Column("push_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_pushed", sa.Float),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("webhook", sa.String(32), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("delivered", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("ix_webhook_deliveries_webhook_created", "webhook_deliveries", ["webhook", "created"])
    op.create_table(
        "rate_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_rate_events_key_at", "rate_events", ["key", "at"])
    op.create_table("facts", sa.Column("name", sa.String(64), primary_key=True), sa.Column("value", sa.Text, nullable=False))


def downgrade() -> None:
    op.drop_table("facts")
    op.drop_table("rate_events")
    op.drop_table("webhook_deliveries")
    op.drop_table("tag_activity")
    with op.batch_alter_table("repositories") as table:
        for column in ("push_count", "last_pulled", "pull_count"):
            table.drop_column(column)
