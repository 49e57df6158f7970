"""Which masks of an image are listed and counted as shown: accepted masks, confident
proposals in the pre-fill arm, the less confident ones once revealed (a
``reveal_less_confident`` event), and the masks' parent links."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, exists, false, func, or_, select
from sqlalchemy.orm import Session

from db.models import Event, Mask

REVEAL_KIND = "reveal_less_confident"  # engine.flywheel.events.REVEAL_LESS_CONFIDENT


def list_masks(
    session: Session,
    *,
    image_id: int,
    proposals: bool = True,
    all_proposals: bool = False,
    history: bool = False,
) -> list[Mask]:
    """Masks of an image, largest first.

    Default: accepted masks plus *confident* proposals. ``proposals=False`` hides
    proposals (control arm); ``all_proposals`` shows unconfident ones too; ``history``
    adds rejected and superseded rows.
    """
    rows = session.scalars(select(Mask).where(Mask.image_id == image_id).order_by(Mask.id))
    out = []
    for m in rows:
        if m.status == "proposed":
            if not proposals or not (m.confident or all_proposals):
                continue
        elif m.status in ("rejected", "superseded") and not history:
            continue
        out.append(m)
    return sorted(out, key=lambda m: -m.area)


def revealed(*, image_id: int, lease_id: int | None) -> ColumnElement[bool]:
    """Whether the annotator revealed the image's less confident proposals, as an SQL
    boolean: a ``reveal_less_confident`` event on the image under ``lease_id`` (or without
    a lease)."""
    return exists().where(
        Event.image_id == image_id,
        Event.kind == REVEAL_KIND,
        or_(Event.lease_id.is_(None), Event.lease_id == lease_id),
    )


def shown_status_counts(
    session: Session, *, image_id: int, lease_id: int | None, arm: str
) -> dict[str, int]:
    """Masks of the image by status, counting only what the annotator was shown.

    Proposals still ``proposed`` count when the arm is ``prefill`` and they are confident, or
    the less confident ones were revealed (``revealed``); in the control arm none does.
    Decided masks (accepted, rejected, superseded) were seen by definition. One statement
    (submit's answer: the reveal check rides along with the counts).
    """
    show_all = revealed(image_id=image_id, lease_id=lease_id) if arm == "prefill" else false()
    rows = session.execute(
        select(Mask.status, Mask.confident, func.count(), show_all.label("show_all"))
        .where(Mask.image_id == image_id)
        .group_by(Mask.status, Mask.confident)
    ).all()
    counts: dict[str, int] = {}
    for status, confident, n, all_shown in rows:
        if status == "proposed" and (arm != "prefill" or not (confident or all_shown)):
            continue
        counts[status] = counts.get(status, 0) + int(n)
    return counts


def parent_links(session: Session, *, image_ids: Sequence[int]) -> dict[int, int | None]:
    """mask id -> parent mask id (None for a first version) of every mask of ``image_ids``."""
    if not image_ids:
        return {}
    q = select(Mask.id, Mask.parent_id).where(Mask.image_id.in_(list(image_ids)))
    return {int(i): (int(p) if p is not None else None) for i, p in session.execute(q)}
