"""Alembic's entry point: migrations run on the connection `Database.migrate` hands over
(`config.attributes["connection"]`), never on one of their own."""

from alembic import context

from registry.core.metadata.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
