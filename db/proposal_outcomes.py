"""Proposal outcomes: a model version's proposals on finished images, with what became of them.

Keyword-only data functions that feed ``engine.flywheel.calibration_project``: the proposals
(``proposal_rows``), the images whose less confident proposals were revealed
(``revealed_images``) and the final masks they are compared with (``final_masks``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Row, and_, func, or_, select
from sqlalchemy.orm import Session

from db.models import Event, Image, Mask
from db.worked_images import done_leases
from engine.flywheel import events as ek  # the event vocabulary (constants only)


def proposal_rows(
    session: Session, *, project_id: int, model_version_ids: Sequence[int]
) -> list[Row[Any]]:
    """Every ``model`` proposal of ``model_version_ids`` on the project's finished images,
    by mask id: (image_id, predicted_iou, stability, area, bbox [x, y, w, h], status,
    confident, rle, arm, height, width). ``arm`` is the finished lease's ("prefill" wins
    when the image was finished in both arms)."""
    leases = done_leases(project_id=project_id).subquery()
    done = (
        select(leases.c.image_id, func.max(leases.c.arm).label("arm"))
        .group_by(leases.c.image_id)
        .subquery()
    )
    return list(
        session.execute(
            select(Mask.image_id, Mask.predicted_iou, Mask.stability, Mask.area, Mask.bbox,
                   Mask.status, Mask.confident, Mask.rle, done.c.arm, Image.height, Image.width)
            .join(Image, Image.id == Mask.image_id)
            .join(done, done.c.image_id == Mask.image_id)
            .where(Mask.source == "model", Mask.model_version_id.in_(model_version_ids))
            .order_by(Mask.id)
        ).all()
    )  # fmt: skip


def revealed_images(session: Session, *, project_id: int) -> set[int]:
    """Ids of the project's finished images with a ``reveal_less_confident`` event under
    their finished lease (or without a lease)."""
    leases = done_leases(project_id=project_id).subquery()
    return set(
        session.scalars(
            select(Event.image_id)
            .join(leases, and_(leases.c.image_id == Event.image_id,
                               or_(Event.lease_id.is_(None), Event.lease_id == leases.c.lease_id)))
            .where(Event.kind == ek.REVEAL_LESS_CONFIDENT)
        )
    )  # fmt: skip


def final_masks(session: Session, *, image_ids: Collection[int]) -> dict[int, list[Any]]:
    """image id -> COCO RLEs of its accepted masks, for every id of ``image_ids`` (an
    image without one maps to [])."""
    finals: dict[int, list[Any]] = {int(i): [] for i in image_ids}
    for img, rle in session.execute(
        select(Mask.image_id, Mask.rle).where(Mask.image_id.in_(list(finals)),
                                              Mask.status == "accepted")
    ):  # fmt: skip
        finals[img].append(rle)
    return finals
