"""A dataset's rows may stay in the owner's PostgreSQL or Spark: its ``format`` says so
('postgresql', 'spark'), beside the files' 'csv' and 'parquet'.

The table is rebuilt with the wider check (SQLite cannot change a check in place; a domain made
before migrations has it unnamed, inline), its rows copied as they are.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FORMATS = "format IN ('csv', 'parquet', 'postgresql', 'spark')"


def _datasets(check: str) -> sa.Table:
    return sa.Table(
        "datasets", sa.MetaData(),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("format", sa.Text, nullable=False),
        sa.Column("meta_json", sa.Text, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="ready"),
        sa.CheckConstraint(check, name="datasets_format"),
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE datasets DROP CONSTRAINT IF EXISTS datasets_format")
        op.create_check_constraint("datasets_format", "datasets", FORMATS)
        return
    # batch mode copies the rows into a table made from this definition (no reflection of the old check)
    with op.batch_alter_table("datasets", copy_from=_datasets(FORMATS), recreate="always"):
        pass


def downgrade() -> None:
    raise NotImplementedError("fednb does not move a store back to an older layout")
