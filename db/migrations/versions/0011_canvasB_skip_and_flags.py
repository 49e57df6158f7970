"""review canvas: lease.skipped_at (skip sends an image to the back of the user's queue),
image_flag (images flagged for a reviewer, with a reason)

Revision ID: 0011_canvasB_skip_and_flags
Revises: 0010_account_security
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models

revision: str = "0011_canvasB_skip_and_flags"
down_revision: str | Sequence[str] | None = "0010_account_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("skipped_at", db.models.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "image_flag",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("lease_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"]),
        sa.ForeignKeyConstraint(["lease_id"], ["lease.id"]),
        sa.ForeignKeyConstraint(["resolved_by"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_image_flag_image", "image_flag", ["image_id"])


def downgrade() -> None:
    op.drop_index("ix_image_flag_image", table_name="image_flag")
    op.drop_table("image_flag")
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.drop_column("skipped_at")
