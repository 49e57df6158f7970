"""64-bit ids for the tables that grow with images, masks and events; prefill_claim

PostgreSQL: every id of those tables and every column pointing at one becomes BIGINT
(``ALTER COLUMN ... TYPE BIGINT``; foreign keys stay valid, int4 and int8 compare in one
btree family), and the serial sequences behind the ids become ``AS bigint`` so they can
pass 2^31 - 1. SQLite: nothing to alter (an INTEGER PRIMARY KEY is already a 64-bit rowid;
the models use ``BigInteger().with_variant(Integer, "sqlite")``). Both: the
``prefill_claim`` table (``db.claims``) and the image index of keyset walks
(``ix_image_project_status_id`` replaces ``ix_image_project_status``).

Revision ID: 0012_bigint_ids
Revises: 0011_skip_and_flags
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models

revision: str = "0012_bigint_ids"
down_revision: str | Sequence[str] | None = "0011_skip_and_flags"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column) pairs widened on PostgreSQL; ids with a serial sequence come first.
ID_COLUMNS = (
    "image",
    "prefill",
    "mask",
    "lease",
    "event",
    "curation_decision",
    "caption",
    "effort_object",
    "auth_token",
)
REF_COLUMNS = (
    ("prefill", "image_id"),
    ("mask", "image_id"),
    ("mask", "parent_id"),
    ("lease", "image_id"),
    ("event", "image_id"),
    ("event", "mask_id"),
    ("event", "lease_id"),
    ("curation_decision", "image_id"),
    ("caption", "image_id"),
    ("effort_cache", "image_id"),
    ("effort_cache", "lease_id"),
    ("effort_cache", "watermark"),
    ("effort_object", "image_id"),
    ("effort_object", "mask_id"),
    ("image_flag", "image_id"),
    ("image_flag", "lease_id"),
)


def _retype(kind: str) -> None:
    conn = op.get_bind()
    for table in ID_COLUMNS:
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN id TYPE {kind}')
        seq = conn.execute(
            sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": f'"{table}"'}
        ).scalar()
        if seq:  # a serial id: its sequence must count past 2^31 - 1 too
            op.execute(f"ALTER SEQUENCE {seq} AS {kind}")
    for table, column in REF_COLUMNS:
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN {column} TYPE {kind}')


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _retype("BIGINT")
    op.create_table(
        "prefill_claim",
        sa.Column("image_id", db.models.BigId, nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("claimed_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_version.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "model_version_id"),
    )
    op.create_index("ix_prefill_claim_worker", "prefill_claim", ["worker_id"])
    # keyset walks read WHERE project_id AND status AND id > :last ORDER BY id: with id in the
    # index that is one range scan; without it PostgreSQL sorted the project for every page
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_index("ix_image_project_status")
        batch_op.create_index("ix_image_project_status_id", ["project_id", "status", "id"])


def downgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_index("ix_image_project_status_id")
        batch_op.create_index("ix_image_project_status", ["project_id", "status"])
    op.drop_index("ix_prefill_claim_worker", table_name="prefill_claim")
    op.drop_table("prefill_claim")
    if op.get_bind().dialect.name == "postgresql":
        _retype("INTEGER")
