"""Export rows: the images a curation stage kept and the masks an export writes, read one
keyset page of images at a time (keyword-only)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import CurationDecision, Mask


def kept_image_ids(session: Session, *, image_ids: Collection[int], stage: str) -> set[int]:
    """The ids among ``image_ids`` whose latest non-superseded ``stage`` decision is keep or
    pass (an image without a decision is not kept)."""
    latest: dict[int, str] = {}
    rows = session.execute(
        select(CurationDecision.image_id, CurationDecision.decision)
        .where(
            CurationDecision.image_id.in_(list(image_ids)),
            CurationDecision.stage == stage,
            CurationDecision.superseded.is_(False),
        )
        .order_by(CurationDecision.id)
    )
    for image_id, decision in rows:
        latest[image_id] = decision
    return {i for i, d in latest.items() if d in ("keep", "pass")}


def masks_by_image(
    session: Session, *, image_ids: Collection[int], statuses: Sequence[str]
) -> dict[int, list[Mask]]:
    """image id -> its masks with one of ``statuses`` (id order), for every id of
    ``image_ids`` (an image without one maps to [])."""
    out: dict[int, list[Mask]] = {int(i): [] for i in image_ids}
    if not out:
        return out
    for m in session.scalars(
        select(Mask)
        .where(Mask.image_id.in_(list(out)), Mask.status.in_(list(statuses)))
        .order_by(Mask.id)
    ):
        out[m.image_id].append(m)
    return out


def mask_labels(
    session: Session, *, image_ids: Collection[int], statuses: Sequence[str]
) -> list[str | None]:
    """The distinct labels (None: unlabelled) of the images' masks with one of
    ``statuses``, in the database's label order."""
    return [
        label
        for (label,) in session.execute(
            select(Mask.label)
            .where(Mask.image_id.in_(list(image_ids)), Mask.status.in_(list(statuses)))
            .group_by(Mask.label)
            .order_by(Mask.label)
        )
    ]
