"""Caption data functions: store a caption (newest wins) and read the one to show."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import InvalidInput, NotFound
from db.models import Caption, Image


def save_caption(
    session: Session, *, image_id: int, text: str, author_id: int | None, source: str = "human"
) -> Caption:
    """Store a caption (newest wins); InvalidInput for an empty or over-long text."""
    text = " ".join(text.split())
    if not text:
        raise InvalidInput("caption must not be empty")
    if len(text) > 2000:
        raise InvalidInput("caption is longer than 2000 characters; shorten it")
    if session.get(Image, image_id) is None:
        raise NotFound(f"no image with id {image_id}")
    row = Caption(image_id=image_id, text=text, source=source, author_id=author_id)
    session.add(row)
    session.flush()
    return row


def latest_caption(session: Session, *, image_id: int) -> Caption | None:
    """The newest human caption, else the newest caption of any source, else None."""
    rows = list(
        session.scalars(
            select(Caption).where(Caption.image_id == image_id).order_by(Caption.id.desc())
        )
    )
    human = [c for c in rows if c.source == "human"]
    return (human or rows or [None])[0]
