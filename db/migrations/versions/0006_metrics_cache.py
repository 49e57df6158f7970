"""metrics cache: per-image mask sums on effort_cache, mask.updated_at index (engine.flywheel.metrics)

Revision ID: 0006_metrics_cache
Revises: 0005_effort_cache
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models

revision: str = "0006_metrics_cache"
down_revision: str | Sequence[str] | None = "0005_effort_cache"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INT_COLS = ("final", "from_proposal", "added", "shown", "accepted_as_is", "fixed",
            "added_clicks", "added_timed")  # fmt: skip
FLOAT_COLS = ("fixed_iou_sum", "added_seconds")


def upgrade() -> None:
    with op.batch_alter_table("effort_cache", schema=None) as batch_op:
        for name in INT_COLS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=True))
        for name in FLOAT_COLS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("masks_checked_at", db.models.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("mask", schema=None) as batch_op:
        batch_op.create_index("ix_mask_updated_at", ["updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mask", schema=None) as batch_op:
        batch_op.drop_index("ix_mask_updated_at")
    with op.batch_alter_table("effort_cache", schema=None) as batch_op:
        for name in ("masks_checked_at", *FLOAT_COLS, *INT_COLS):
            batch_op.drop_column(name)
