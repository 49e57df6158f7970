"""account security: case-insensitive unique user names (user_account.name_key), login_throttle

Revision ID: 0010_account_security
Revises: 0009_mask_idempotency
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models

revision: str = "0010_account_security"
down_revision: str | Sequence[str] | None = "0009_mask_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(name: str) -> str:
    """Frozen copy of db.models.name_key at this revision."""
    folded = unicodedata.normalize("NFKC", name).strip().casefold()
    return unicodedata.normalize("NFKC", folded)


def upgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_key", sa.String(length=100), nullable=True))
    conn = op.get_bind()
    users = sa.table("user_account", sa.column("id"), sa.column("name"), sa.column("name_key"))
    seen: dict[str, str] = {}
    clashes: list[str] = []
    for uid, name in conn.execute(sa.select(users.c.id, users.c.name)).all():
        key = _key(name)
        if key in seen:
            clashes.append(f"{seen[key]!r} and {name!r}")
        seen[key] = name
        conn.execute(users.update().where(users.c.id == uid).values(name_key=key))
    if clashes:
        raise RuntimeError(
            "user names that differ only in case or Unicode form: "
            + "; ".join(clashes)
            + ". Rename one of each pair (UPDATE user_account SET name = ...), then upgrade again."
        )
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.alter_column("name_key", existing_type=sa.String(length=100), nullable=False)
        batch_op.create_index("ix_user_account_name_key", ["name_key"], unique=True)
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_index("ix_user_account_name_key")
        batch_op.drop_column("name_key")
