"""Moving between images: skip one (to the back of my queue), reopen the previous one.

Both work on ``lease`` rows (``db.leases``): a skip is a release with ``skipped_at`` set,
which ``db.leases.next_lease`` orders last for that user; "previous" reopens the image
the user finished last, when nobody has taken it since.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from db.errors import Conflict, NotFound
from db.lease_lookups import live_holders
from db.leases import _own_live_lease, _taken, add_lease, release
from db.models import Image, Lease, utcnow
from db.rounds import current_round


def skip(
    session: Session,
    *,
    lease_id: int,
    user_id: int,
    draft: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Lease:
    """Release the lease and mark the image skipped: ``next_lease`` hands this user every
    other free image first. The image stays free for everybody else."""
    now = now or utcnow()
    lease = release(session, lease_id=lease_id, user_id=user_id, draft=draft, now=now)
    lease.skipped_at = now
    session.flush()
    return lease


def previous_lease(
    session: Session,
    *,
    user_id: int,
    project_id: int,
    stage: str = "annotate",
    minutes: float = 30.0,
    now: dt.datetime | None = None,
) -> Lease:
    """Reopen the image this user finished (submitted or skipped) last in this project and
    stage, releasing the live lease they hold now (its draft is kept).

    A skipped or released image gets a new lease if it is still free. A submitted one is
    reopened (the same lease, live again; submit finishes it again) when nobody else
    holds it and it was submitted in the round that is still open. Raises NotFound when
    there is nothing before, Conflict (naming why) when that image can't be reopened.
    """
    now = now or utcnow()
    current = _own_live_lease(session, user_id=user_id, project_id=project_id, stage=stage, now=now)
    q = (
        select(Lease)
        .join(Image, Image.id == Lease.image_id)
        .where(
            Lease.user_id == user_id,
            Lease.stage == stage,
            Image.project_id == project_id,
            or_(Lease.completed_at.is_not(None), Lease.expires_at <= now),
        )
        .order_by(func.coalesce(Lease.completed_at, Lease.expires_at).desc(), Lease.id.desc())
    )
    if current is not None:
        q = q.where(Lease.image_id != current.image_id)
    last = session.scalars(q.limit(1)).first()
    if last is None:
        raise NotFound("there is no earlier image of yours in this project")
    holders = live_holders(session, image_id=last.image_id, now=now) - {user_id}
    if holders:
        raise Conflict("someone else is working on your previous image now; try again later")
    rnd = current_round(session, project_id=project_id)
    if last.completed_at is not None:
        if last.round_id != (rnd.id if rnd else None):
            raise Conflict(
                "your previous image was submitted in an earlier round and can no longer be "
                "changed; ask a reviewer to correct it"
            )
        done_later = session.scalar(
            select(Lease.id).where(
                Lease.image_id == last.image_id,
                Lease.stage == stage,
                Lease.completed_at.is_not(None),
                Lease.id > last.id,
            )
        )
        if done_later is not None:
            raise Conflict("your previous image was finished again by someone else since")
    elif session.scalar(select(Image.id).where(Image.id == last.image_id, _taken(stage, now))):
        raise Conflict("your previous image was taken by someone else since")
    if current is not None:
        current.expires_at = min(current.expires_at, now)
    if last.completed_at is not None:
        last.completed_at = None
        last.submit_result = None
        last.heartbeat_at = now
        last.expires_at = now + dt.timedelta(minutes=minutes)
        session.flush()
        return last
    return add_lease(
        session,
        image_id=last.image_id,
        user_id=user_id,
        stage=stage,
        round_id=rnd.id if rnd else None,
        arm=last.arm,
        minutes=minutes,
        now=now,
    )
