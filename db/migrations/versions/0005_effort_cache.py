"""effort cache: derived per-image active seconds and per-object effort (engine.flywheel.metrics)

Revision ID: 0005_effort_cache
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models

revision: str = "0005_effort_cache"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "effort_cache",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("lease_id", sa.Integer(), nullable=True),
        sa.Column("idle_s", sa.Float(), nullable=False),
        sa.Column("watermark", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("computed_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id"),
    )
    op.create_table(
        "effort_object",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("mask_id", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("iou", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("effort_object", schema=None) as batch_op:
        batch_op.create_index("ix_effort_object_image", ["image_id"], unique=False)
        batch_op.create_index("ix_effort_object_mask", ["mask_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("effort_object", schema=None) as batch_op:
        batch_op.drop_index("ix_effort_object_mask")
        batch_op.drop_index("ix_effort_object_image")
    op.drop_table("effort_object")
    op.drop_table("effort_cache")
