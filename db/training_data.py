"""Training data: the accepted masks of a project's ok images, the ground truth a model
version is fine-tuned on (keyword-only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Image, Mask


def accepted_mask_rles(
    session: Session, *, project_id: int
) -> dict[int, tuple[str, str | None, list[dict[str, Any]]]]:
    """image id -> (uri, sha256, [COCO RLE dicts of its accepted masks, by mask id]) for the
    project's ok images with at least one accepted mask, in image id order."""
    rows = session.execute(
        select(Image.id, Image.uri, Image.sha256, Mask.rle)
        .join(Mask, Mask.image_id == Image.id)
        .where(Image.project_id == project_id, Image.status == "ok", Mask.status == "accepted")
        .order_by(Image.id, Mask.id)
    ).all()
    out: dict[int, tuple[str, str | None, list[dict[str, Any]]]] = {}
    for image_id, uri, sha, rle in rows:
        out.setdefault(int(image_id), (uri, sha, []))[2].append(rle)
    return out
