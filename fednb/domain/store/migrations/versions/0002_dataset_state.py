"""A dataset's row says whether its files are in place: written 'pending' (with its audit row)
before the files move, 'ready' after, so a crash in between leaves a row the domain recognises and
clears on open instead of a half-added dataset.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("datasets")}
    if "state" not in columns:  # a domain from before: 0001 kept its datasets table as it was
        with op.batch_alter_table("datasets") as batch:
            batch.add_column(sa.Column("state", sa.Text, nullable=False, server_default="ready"))
