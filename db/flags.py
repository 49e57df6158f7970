"""Images flagged for a reviewer: an annotator says what is wrong, a reviewer resolves it.

A flag is open while ``resolved_at`` is NULL. Flagging never changes the image's masks
or lease; the page skips the image after flagging it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import Conflict, InvalidInput, NotFound
from db.models import Image, ImageFlag, User, utcnow

MAX_REASON_CHARS = 2000


def flag_image(
    session: Session, *, image_id: int, user_id: int, reason: str, lease_id: int | None = None
) -> ImageFlag:
    """Open a flag on the image; InvalidInput for an empty or too long reason, NotFound for
    an unknown image. A second open flag by the same user replaces the reason."""
    text = (reason or "").strip()
    if not text:
        raise InvalidInput("say why you flag the image (the reason is empty)")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput(f"the reason is {len(text)} characters; at most {MAX_REASON_CHARS}")
    if session.get(Image, image_id) is None:
        raise NotFound(f"no image with id {image_id}")
    flag = session.scalar(
        select(ImageFlag).where(
            ImageFlag.image_id == image_id,
            ImageFlag.user_id == user_id,
            ImageFlag.resolved_at.is_(None),
        )
    )
    if flag is None:
        flag = ImageFlag(image_id=image_id, user_id=user_id, lease_id=lease_id, reason=text)
        session.add(flag)
    else:
        flag.reason = text
    session.flush()
    return flag


def list_flags(
    session: Session, *, project_id: int, resolved: bool = False
) -> list[dict[str, Any]]:
    """The project's open flags (``resolved=True``: the resolved ones), newest first, each as
    ``{id, image_id, uri, width, height, user, reason, created_at, resolved_at, resolution}``."""
    q = (
        select(ImageFlag, Image, User.name)
        .join(Image, Image.id == ImageFlag.image_id)
        .join(User, User.id == ImageFlag.user_id)
        .where(Image.project_id == project_id)
        .where(ImageFlag.resolved_at.is_not(None) if resolved else ImageFlag.resolved_at.is_(None))
        .order_by(ImageFlag.created_at.desc(), ImageFlag.id.desc())
    )
    return [
        {
            "id": f.id,
            "image_id": im.id,
            "width": im.width,
            "height": im.height,
            "user": name,
            "reason": f.reason,
            "created_at": f.created_at,
            "resolved_at": f.resolved_at,
            "resolution": f.resolution,
        }
        for f, im, name in session.execute(q).all()
    ]


def resolve_flag(
    session: Session, *, flag_id: int, user_id: int, resolution: str | None = None
) -> ImageFlag:
    """Close a flag; NotFound for an unknown id, Conflict when it is already resolved."""
    flag = session.get(ImageFlag, flag_id)
    if flag is None:
        raise NotFound(f"no flag with id {flag_id}")
    if flag.resolved_at is not None:
        raise Conflict(f"flag {flag_id} was already resolved")
    flag.resolved_at = utcnow()
    flag.resolved_by = user_id
    flag.resolution = (resolution or "").strip()[:MAX_REASON_CHARS] or None
    session.flush()
    return flag
