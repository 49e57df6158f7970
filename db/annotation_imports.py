"""Annotation imports: what earlier imports of an annotation left on an image (its events
and the proposals it may decide), so a re-import is idempotent (keyword-only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Event, Mask


def event_payloads(session: Session, *, image_id: int, kind: str) -> list[Any]:
    """The JSON payloads (usually dicts) of the image's events of ``kind``, in id order."""
    q = select(Event.payload).where(Event.image_id == image_id, Event.kind == kind)
    return list(session.scalars(q.order_by(Event.id)))


def event_uuid_taken(session: Session, *, uuid: str) -> bool:
    """Whether an event with this uuid is stored (events are idempotent by uuid)."""
    return session.scalar(select(Event.id).where(Event.uuid == uuid)) is not None


def confident_proposals(session: Session, *, image_id: int) -> list[Mask]:
    """The image's confident ``proposed`` masks, in id order."""
    q = select(Mask).where(
        Mask.image_id == image_id, Mask.status == "proposed", Mask.confident.is_(True)
    )
    return list(session.scalars(q.order_by(Mask.id)))
