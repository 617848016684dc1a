"""Scopes of personal access tokens, and "sign out everywhere".

Tokens made before this revision keep the full power they had (scope "admin"). An account's
`sessions_after` ends every web session issued before it.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_tokens") as table:
        table.add_column(sa.Column("scope", sa.String(16), nullable=False, server_default="admin"))
    with op.batch_alter_table("accounts") as table:
        table.add_column(sa.Column("sessions_after", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as table:
        table.drop_column("sessions_after")
    with op.batch_alter_table("access_tokens") as table:
        table.drop_column("scope")
