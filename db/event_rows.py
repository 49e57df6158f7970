"""Event rows for export: a project's events joined with their lease, round and user, read
one keyset page at a time as plain rows (keyword-only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from db.models import Event, Image, Lease, Round, User


def event_page(
    session: Session, *, project_id: int, after_id: int = 0, limit: int = 5000
) -> list[Row[Any]]:
    """Up to ``limit`` events of the project's images with id > ``after_id``, ascending id.

    Row attributes: the ``Event`` columns id, uuid, session_id, seq, client_time,
    server_time, visible, kind, image_id, mask_id, lease_id, user_id, payload; the lease's
    stage, completed_at and arm (None without a lease), ``round`` (the lease's round number)
    and ``user_name``. Plain rows, no ORM identities: memory stays O(limit)."""
    q = (
        select(
            Event.id,
            Event.uuid,
            Event.session_id,
            Event.seq,
            Event.client_time,
            Event.server_time,
            Event.visible,
            Event.kind,
            Event.image_id,
            Event.mask_id,
            Event.lease_id,
            Event.user_id,
            Event.payload,
            Lease.stage,
            Lease.completed_at,
            Round.number.label("round"),
            Lease.arm,
            User.name.label("user_name"),
        )
        .join(Image, Image.id == Event.image_id)
        .join(User, User.id == Event.user_id)
        .outerjoin(Lease, Lease.id == Event.lease_id)
        .outerjoin(Round, Round.id == Lease.round_id)
        .where(Image.project_id == project_id, Event.id > after_id)
        .order_by(Event.id)
        .limit(limit)
    )
    return list(session.execute(q).all())
