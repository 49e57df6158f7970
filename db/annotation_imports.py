"""Annotation imports: what earlier imports of an annotation left on an image (its events
and the proposals it may decide), so a re-import is idempotent, and the rows an import adds
(masks, events) (keyword-only)."""

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


def find_mask(session: Session, *, mask_id: int) -> Mask | None:
    """The mask with this id, or None (an imported region may name a mask that is gone)."""
    return session.get(Mask, mask_id)


def add_mask_row(
    session: Session,
    *,
    image_id: int,
    rle: dict[str, Any],
    bbox: list[float],
    area: int,
    label: str | None,
    source: str,
    status: str,
    author_id: int | None,
    meta: dict[str, Any],
    **fields: Any,
) -> Mask:
    """Add an imported mask row (checked by the importer; not flushed: no id yet)."""
    row = Mask(
        image_id=image_id,
        rle=rle,
        bbox=bbox,
        area=area,
        label=label,
        source=source,
        status=status,
        author_id=author_id,
        meta=meta,
        **fields,
    )
    session.add(row)
    return row


def add_import_event(
    session: Session,
    *,
    uuid: str,
    user_id: int,
    image_id: int,
    session_id: str,
    kind: str,
    payload: dict[str, Any],
) -> Event:
    """Add the event an imported annotation leaves (``seq`` 0, ``client_time`` 0, visible;
    not flushed)."""
    row = Event(
        uuid=uuid,
        user_id=user_id,
        image_id=image_id,
        session_id=session_id,
        seq=0,
        kind=kind,
        payload=payload,
        client_time=0.0,
        visible=True,
    )
    session.add(row)
    return row
