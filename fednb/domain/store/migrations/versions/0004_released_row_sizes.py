"""Each remembered row set keeps its bitmap's container keys and sizes beside the bitmap, so the
differencing check tells most near-sized sets apart without reading their bitmaps. Sets remembered
before have none (NULL) and are compared bitmap to bitmap, as before.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("released_rows")}
    if "container_sizes" not in columns:  # a store made by 0001 from this version's tables has it
        with op.batch_alter_table("released_rows") as batch:
            batch.add_column(sa.Column("container_sizes", sa.LargeBinary))


def downgrade() -> None:
    raise NotImplementedError("fednb does not move a store back to an older layout")
