"""The layout of every domain made before migrations existed.

Tables already there (a domain folder from before) are kept as they are; tables that older code
made on first use (budgets, differencing memory, receipts, published heads, secure-aggregation
bookkeeping, pinned peers) are created when missing, so every domain leaves this step alike.

Revision ID: 0001
"""

from alembic import op

from fednb.domain.store import schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    before = [t for t in schema.metadata.sorted_tables]
    schema.metadata.create_all(bind, tables=before, checkfirst=True)
