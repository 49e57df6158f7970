"""mask idempotency: mask.client_key unique per author; lease.submit_result for submit retries

Revision ID: 0009_mask_idempotency
Revises: 0008_worker_heartbeat
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_mask_idempotency"
down_revision: str | Sequence[str] | None = "0008_worker_heartbeat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mask", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_key", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_mask_author_client_key", ["author_id", "client_key"])
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.add_column(sa.Column("submit_result", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.drop_column("submit_result")
    with op.batch_alter_table("mask", schema=None) as batch_op:
        batch_op.drop_constraint("uq_mask_author_client_key", type_="unique")
        batch_op.drop_column("client_key")
