"""Worked images: the units the flywheel metrics, calibration and event export count.

Keyword-only builders of SQL selects (not executed here): callers turn them into subqueries
and join them; ``worked_image_page`` executes one keyset page. ``worked_images`` is every image with annotation work, ``done_leases`` the
finished ``annotate`` leases in rounds, ``shown_to_annotator`` the proposals the annotator saw.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select, and_, case, exists, func, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from db.models import Event, Image, Lease, Mask, Round
from engine.flywheel import events as ek  # the event vocabulary (constants only)


def done_leases(*, project_id: int | None, image_id: int | None = None) -> Select[Any]:
    """Select (lease_id, image_id, arm, round) of finished ``annotate`` leases in rounds,
    of one project and/or one image: the images the metrics (and calibration) count."""
    q = (
        select(
            Lease.id.label("lease_id"),
            Lease.image_id,
            Lease.arm,
            Round.number.label("round"),
        )
        .join(Round, Round.id == Lease.round_id)
        .where(Lease.stage == "annotate", Lease.completed_at.is_not(None))
    )
    if project_id is not None:
        q = q.where(Round.project_id == project_id)
    if image_id is not None:
        q = q.where(Lease.image_id == image_id)
    return q


def worked_images(*, project_id: int | None, image_id: int | None = None) -> Select[Any]:
    """Select (image_id, lease_id, round, arm) of every image with annotation work (an
    ``annotate`` lease or any event) of one project and/or one image: the metrics' units.

    ``lease_id``: the newest finished ``annotate`` lease (NULL: not finished; its seconds are
    ``released_s``). ``round`` / ``arm``: that lease's, else the newest ``annotate`` lease's;
    ``round`` NULL = work done while no round was open ("no round" row).
    """
    leases = (
        select(
            Lease.image_id,
            func.max(case((Lease.completed_at.is_not(None), Lease.id))).label("done_id"),
            func.max(Lease.id).label("any_id"),
        )
        .join(Image, Image.id == Lease.image_id)
        .where(Lease.stage == "annotate")
        .group_by(Lease.image_id)
    )
    scope = []
    if project_id is not None:
        scope.append(Image.project_id == project_id)
    if image_id is not None:
        scope.append(Image.id == image_id)
    leases = leases.where(*scope).subquery("annotate_leases")
    has_event = exists().where(Event.image_id == Image.id)
    units = (
        select(
            Image.id.label("image_id"),
            leases.c.done_id.label("lease_id"),
            func.coalesce(leases.c.done_id, leases.c.any_id).label("group_lease"),
        )
        .outerjoin(leases, leases.c.image_id == Image.id)
        .where(*scope, or_(leases.c.image_id.is_not(None), has_event))
    )
    u = units.subquery("units")
    return (
        select(u.c.image_id, u.c.lease_id, Round.number.label("round"),
               func.coalesce(Lease.arm, "prefill").label("arm"))
        .outerjoin(Lease, Lease.id == u.c.group_lease)
        .outerjoin(Round, Round.id == Lease.round_id)
    )  # fmt: skip


def shown_to_annotator(*, done: Any) -> ColumnElement[bool]:
    """SQL condition on ``Mask`` (joined with the ``done`` leases subquery, which has
    ``lease_id``): a ``model`` proposal the annotator was shown. Confident proposals are
    pre-filled; the less confident ones count only on images where the annotator revealed them
    (a ``reveal_less_confident`` event under the image's done lease, or without a lease). The
    control arm shows nothing: its figures are zeroed by the metrics' table."""
    revealed = (
        select(Event.id)
        .where(
            Event.image_id == Mask.image_id,
            Event.kind == ek.REVEAL_LESS_CONFIDENT,
            or_(Event.lease_id.is_(None), Event.lease_id == done.c.lease_id),
        )
        .exists()
    )
    return and_(Mask.source == "model", or_(Mask.confident == true(), revealed))


def worked_image_page(
    session: Session, *, project_id: int, after_image_id: int = 0, limit: int = 500
) -> list[Row[Any]]:
    """One keyset page of ``worked_images`` rows (image_id, lease_id, round, arm) with
    image_id > ``after_image_id``, ascending image_id, at most ``limit`` (executed)."""
    units = worked_images(project_id=project_id).subquery("units")
    return list(
        session.execute(
            select(units)
            .where(units.c.image_id > after_image_id)
            .order_by(units.c.image_id)
            .limit(limit)
        ).all()
    )
