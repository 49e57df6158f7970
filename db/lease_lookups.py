"""Read-only questions about leases: who holds or recently held an image, which arm an
image is served in, and how a project's queue stands. (Handing out, keeping and ending
leases: ``db.leases``.)"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from db.errors import NotFound
from db.leases import STAGES
from db.models import Image, Lease, utcnow
from db.rounds import arm_for_image, current_round


def user_has_lease(session: Session, *, user_id: int, image_id: int) -> bool:
    """True when the user holds or held a lease on the image (any stage)."""
    q = select(Lease.id).where(Lease.user_id == user_id, Lease.image_id == image_id).limit(1)
    return session.scalar(q) is not None


def arm_of(session: Session, *, image_id: int, user_id: int | None = None) -> str:
    """The arm the image is served in: the user's newest lease's, else the current round's."""
    if user_id is not None:
        arm = session.scalar(
            select(Lease.arm)
            .where(Lease.user_id == user_id, Lease.image_id == image_id)
            .order_by(Lease.id.desc())
            .limit(1)
        )
        if arm is not None:
            return str(arm)
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"no image with id {image_id}")
    return arm_for_image(current_round(session, project_id=image.project_id), image_id)


def queue_counts(
    session: Session, *, project_id: int, stage: str = "annotate", now: dt.datetime | None = None
) -> dict[str, int]:
    """How many ok images are free, leased (live at ``now``) and done in a stage (three COUNT
    queries: nothing per image is loaded)."""
    now = now or utcnow()
    ok = and_(Image.project_id == project_id, Image.status == "ok")
    total = session.scalar(select(func.count()).select_from(Image).where(ok)) or 0

    def images_with(*conditions: Any) -> int:
        q = (
            select(func.count(func.distinct(Lease.image_id)))
            .join(Image, Image.id == Lease.image_id)
            .where(Image.project_id == project_id, Lease.stage == stage, *conditions)
        )
        return session.scalar(q) or 0

    done = images_with(Lease.completed_at.is_not(None))
    leased = images_with(Lease.completed_at.is_(None), Lease.expires_at > now)
    return {"total": total, "done": done, "leased": leased, "free": total - done - leased}


def is_recent(
    lease: Lease,
    *,
    stages: tuple[str, ...] = STAGES,
    grace: dt.timedelta = dt.timedelta(0),
    now: dt.datetime | None = None,
) -> bool:
    """``recent_lease``'s test on one loaded lease: in ``stages``, and live or ended at most
    ``grace`` ago."""
    cutoff = (now or utcnow()) - grace
    if lease.stage not in stages:
        return False
    if lease.completed_at is None:
        return lease.expires_at >= cutoff
    return lease.completed_at >= cutoff


def recent_lease(
    session: Session,
    *,
    user_id: int,
    image_id: int,
    stages: tuple[str, ...] = STAGES,
    grace: dt.timedelta = dt.timedelta(0),
    lease_id: int | None = None,
    now: dt.datetime | None = None,
) -> Lease | None:
    """The user's newest lease on the image (in ``stages``; the one with ``lease_id`` if
    given) that is live, or ended (submitted, expired or released) at most ``grace`` ago;
    None if there is none. Used to accept work arriving shortly after a lease ended."""
    cutoff = (now or utcnow()) - grace
    q = select(Lease).where(
        Lease.user_id == user_id,
        Lease.image_id == image_id,
        Lease.stage.in_(stages),
        or_(
            and_(Lease.completed_at.is_(None), Lease.expires_at >= cutoff),
            Lease.completed_at >= cutoff,
        ),
    )
    if lease_id is not None:
        q = q.where(Lease.id == lease_id)
    return session.scalars(q.order_by(Lease.id.desc()).limit(1)).first()


def live_holders(session: Session, *, image_id: int, now: dt.datetime | None = None) -> set[int]:
    """Ids of the users holding a live lease on the image (any stage)."""
    now = now or utcnow()
    q = select(Lease.user_id).where(
        Lease.image_id == image_id, Lease.completed_at.is_(None), Lease.expires_at > now
    )
    return set(session.scalars(q))
