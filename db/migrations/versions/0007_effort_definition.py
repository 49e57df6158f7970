"""one effort definition: effort_cache.imported_s, and every derived effort row re-derived

The effort rules changed (submit stops the clock until the next image_open, work on released
leases counts, a mask's cost includes its ancestors'): the derived ``effort_cache`` /
``effort_object`` rows are dropped here and re-derived from the event log on the next query.

Revision ID: 0007_effort_definition
Revises: 0006_metrics_cache
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_effort_definition"
down_revision: str | Sequence[str] | None = "0006_metrics_cache"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM effort_object")
    op.execute("DELETE FROM effort_cache")
    with op.batch_alter_table("effort_cache", schema=None) as batch_op:
        batch_op.add_column(sa.Column("imported_s", sa.Float(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM effort_object")
    op.execute("DELETE FROM effort_cache")
    with op.batch_alter_table("effort_cache", schema=None) as batch_op:
        batch_op.drop_column("imported_s")
