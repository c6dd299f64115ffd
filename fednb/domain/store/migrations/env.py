"""Alembic's entry point for a domain's store: always run from :mod:`fednb.domain.store.migrate`,
which hands over an open connection (``config.attributes["connection"]``)."""

from alembic import context

from fednb.domain.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
