"""Task leases: hand each image to one person per stage, keep it while heartbeats arrive.

A lease is *live* while ``completed_at`` is NULL and ``expires_at`` is in the future;
*done* once ``completed_at`` is set. An image is free in a stage when it has neither.
Work sent on a lost lease (expired, or taken over) is stored in ``lease.draft`` and
``LeaseLost`` is raised; the caller commits before answering, so nothing is lost.

Concurrency: ``next_lease`` locks the candidate image row (PostgreSQL: ``SELECT ... FOR
UPDATE SKIP LOCKED``; SQLite: the database write lock, as ``db.session`` begins every
transaction IMMEDIATE), then re-checks with a fresh statement, so two people asking at
the same instant never get the same image.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from db.errors import Conflict, InvalidInput, LeaseLost, NotFound, PermissionDenied
from db.models import Image, Lease, Project, Round, utcnow
from db.rounds import arm_for_image, open_round_id

STAGES = ("annotate", "generalist", "specialist")


def _taken(stage: str, now: dt.datetime) -> Any:
    """SQL condition: the outer ``Image`` row has a live or done lease in ``stage``."""
    return exists().where(
        Lease.image_id == Image.id,
        Lease.stage == stage,
        or_(Lease.completed_at.is_not(None), Lease.expires_at > now),
    )


def is_live(lease: Lease, now: dt.datetime | None = None) -> bool:
    return lease.completed_at is None and lease.expires_at > (now or utcnow())


def _own_live_lease(
    session: Session, *, user_id: int, project_id: int, stage: str, now: dt.datetime
) -> Lease | None:
    q = (
        select(Lease)
        .join(Image, Image.id == Lease.image_id)
        .where(
            Lease.user_id == user_id,
            Lease.stage == stage,
            Image.project_id == project_id,
            Lease.completed_at.is_(None),
            Lease.expires_at > now,
        )
        .order_by(Lease.id.desc())
        .limit(1)
    )
    return session.scalars(q).first()


def _lost_draft(*, image_id: int, user_id: int, stage: str) -> Any:
    """SQL scalar: the newest draft this user left on this image (a lost or released lease),
    if any."""
    return (
        select(Lease.draft)
        .where(
            Lease.image_id == image_id,
            Lease.user_id == user_id,
            Lease.stage == stage,
            Lease.completed_at.is_(None),
            Lease.draft.is_not(None),
        )
        .order_by(Lease.id.desc())
        .limit(1)
        .scalar_subquery()
    )


_LOOK_UP = object()  # add_lease's draft: read it


def add_lease(
    session: Session,
    *,
    image_id: int,
    user_id: int,
    stage: str,
    round_id: int | None,
    arm: str,
    minutes: float,
    now: dt.datetime,
    draft: Any = _LOOK_UP,
) -> Lease:
    """Add (and flush) a new live lease on ``image_id`` for ``minutes`` from ``now``; it
    inherits this user's draft from an earlier lost or released lease on the image
    (``draft``: that draft, or None, when the caller read it already)."""
    if draft is _LOOK_UP:
        draft = session.scalar(select(_lost_draft(image_id=image_id, user_id=user_id, stage=stage)))
    lease = Lease(
        image_id=image_id,
        user_id=user_id,
        stage=stage,
        round_id=round_id,
        arm=arm,
        created_at=now,
        heartbeat_at=now,
        expires_at=now + dt.timedelta(minutes=minutes),
        draft=draft,
    )
    session.add(lease)
    session.flush()
    return lease


def _free_image(
    session: Session,
    *,
    user_id: int,
    project_id: int,
    stage: str,
    now: dt.datetime,
    but: list[int],
) -> int | None:
    """The first free image (locked, PostgreSQL) in ``next_lease``'s order, not in ``but``.

    Two queries, each stopping at its first row in index order: images this user has not
    skipped, by id; else those they skipped, the longest-skipped first. (One query ordered
    by the skip time computed that subquery for every free image of the project and sorted
    them all, on every call.)
    """
    # "no such lease" as (SELECT ... LIMIT 1) IS NULL: an index probe per image in id order.
    # PostgreSQL turns NOT EXISTS into an anti join, which on a young lease table (no
    # statistics yet) scanned every lease for every image passed over.
    taken = select(Lease.id).where(
        Lease.image_id == Image.id,
        Lease.stage == stage,
        or_(Lease.completed_at.is_not(None), Lease.expires_at > now),
    )
    free = select(Image.id).where(
        Image.project_id == project_id,
        Image.status == "ok",
        taken.limit(1).correlate(Image).scalar_subquery().is_(None),
    )
    if but:
        free = free.where(Image.id.not_in(but))
    mine = (Lease.image_id == Image.id, Lease.user_id == user_id, Lease.stage == stage)
    skip = select(Lease.id).where(*mine, Lease.skipped_at.is_not(None)).limit(1).correlate(Image)
    skipped_by_me = skip.scalar_subquery().is_not(None)
    first = free.where(~skipped_by_me).order_by(Image.id)
    image_id = session.scalar(first.limit(1).with_for_update(skip_locked=True))
    if image_id is not None:
        return image_id
    skip_time = select(func.max(Lease.skipped_at)).where(*mine).correlate(Image).scalar_subquery()
    again = free.where(skipped_by_me).order_by(skip_time, Image.id)
    return session.scalar(again.limit(1).with_for_update(skip_locked=True))  # PostgreSQL only


def next_lease(
    session: Session,
    *,
    user_id: int,
    project_id: int,
    stage: str = "annotate",
    minutes: float = 30.0,
    now: dt.datetime | None = None,
) -> Lease:
    """The user's live lease in this project and stage, or a new one on a free image.

    Free = status ``ok``, no live and no done lease in ``stage``; lowest id first, except
    that images this user skipped (``skip``) come last, the longest-skipped first. The
    lease records the round and arm (``control`` images are served without pre-fill) and
    inherits this user's draft from an earlier lost lease on the same image.
    Raises NotFound when the queue is empty, InvalidInput for an unknown stage.
    """
    if stage not in STAGES:
        raise InvalidInput(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    now = now or utcnow()
    own = _own_live_lease(session, user_id=user_id, project_id=project_id, stage=stage, now=now)
    if own is not None:
        return own
    skipped: list[int] = []
    while True:
        image_id = _free_image(
            session, user_id=user_id, project_id=project_id, stage=stage, now=now, but=skipped
        )
        if image_id is None:
            raise NotFound(f"no images left to {stage} in project {project_id}")
        # Fresh statement, fresh snapshot: a lease committed while we waited is visible now.
        # It also reads what the new lease needs: the image with its project (the caller's
        # answer), the project's open round (``current_round``) and this user's lost draft.
        still_free = (
            select(
                Image, Project, Round, _lost_draft(image_id=image_id, user_id=user_id, stage=stage)
            )
            .join(Project, Project.id == Image.project_id)
            .outerjoin(Round, Round.id == open_round_id(project_id=project_id))
            .where(Image.id == image_id, ~_taken(stage, now))
        )
        row = session.execute(still_free).first()
        if row is None:
            skipped.append(image_id)
            continue
        rnd, draft = row[2], row[3]
        return add_lease(
            session,
            image_id=image_id,
            user_id=user_id,
            stage=stage,
            round_id=rnd.id if rnd else None,
            arm=arm_for_image(rnd, image_id),
            minutes=minutes,
            now=now,
            draft=draft,
        )


def get_lease(session: Session, *, lease_id: int, lock: bool = False) -> Lease:
    """The lease; NotFound if there is none.

    Not yet in the session (or ``lock``), it is read together with its image and project in
    one statement: the routes that check a lease then answer with, or check against, its
    image (heartbeat, submit) read them next. ``lock``: read the lease row ``FOR UPDATE``
    (PostgreSQL; SQLite transactions already hold the write lock), fresh from the database.
    """
    if not lock and identity_key(Lease, lease_id) in session.identity_map:
        lease = session.get(Lease, lease_id)
    else:
        q = (
            select(Lease, Image, Project)
            .join(Image, Image.id == Lease.image_id)
            .join(Project, Project.id == Image.project_id)
            .where(Lease.id == lease_id)
        )
        if lock:
            q = q.with_for_update(of=Lease).execution_options(populate_existing=True)
        row = session.execute(q).first()
        lease = row[0] if row is not None else None
    if lease is None:
        raise NotFound(f"no lease with id {lease_id}")
    return lease


def own_lease(session: Session, *, lease_id: int, user_id: int, lock: bool = False) -> Lease:
    """The lease, if it belongs to ``user_id`` (PermissionDenied otherwise).

    ``lock``: read it ``FOR UPDATE`` (``get_lease``), so two submits of one lease run one
    after the other.
    """
    lease = get_lease(session, lease_id=lease_id, lock=lock)
    if lease.user_id != user_id:
        raise PermissionDenied("this lease belongs to someone else")
    return lease


def _lost(lease: Lease, draft: dict[str, Any] | None, what: str) -> LeaseLost:
    if draft is not None:  # merged: changes refused earlier (pending_ops) stay in the draft
        lease.draft = {**(lease.draft or {}), **draft}
    return LeaseLost(
        f"the lease on image {lease.image_id} was lost (it expired after missing heartbeats, "
        f"or was released) before {what}; your work was kept as a draft on lease {lease.id} "
        "and comes back when you open this image again"
    )


def heartbeat(
    session: Session,
    *,
    lease_id: int,
    user_id: int,
    minutes: float = 30.0,
    draft: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Lease:
    """Extend a live lease by ``minutes`` from now and store ``draft`` if given.

    Raises LeaseLost (after storing the draft: commit, then answer 409) when expired,
    Conflict when already submitted, PermissionDenied for someone else's lease.
    """
    now = now or utcnow()
    lease = own_lease(session, lease_id=lease_id, user_id=user_id)
    if lease.completed_at is not None:
        raise Conflict(f"lease {lease_id} was already submitted")
    if lease.expires_at <= now:
        raise _lost(lease, draft, "this heartbeat")
    lease.heartbeat_at = now
    lease.expires_at = now + dt.timedelta(minutes=minutes)
    if draft is not None:
        lease.draft = draft
    session.flush()
    return lease


def check_live(
    session: Session,
    *,
    lease_id: int,
    user_id: int,
    draft: dict[str, Any] | None = None,
    what: str = "submitting",
    now: dt.datetime | None = None,
) -> Lease:
    """The lease if it is this user's and live; else store ``draft`` and raise LeaseLost."""
    now = now or utcnow()
    lease = own_lease(session, lease_id=lease_id, user_id=user_id)
    if lease.completed_at is not None:
        raise Conflict(f"lease {lease_id} was already submitted")
    if lease.expires_at <= now:
        raise _lost(lease, draft, what)
    return lease


def complete(
    session: Session,
    *,
    lease: Lease,
    now: dt.datetime | None = None,
    submit_result: dict[str, Any] | None = None,
) -> Lease:
    """Mark a live lease done (the image is finished in its stage).

    ``submit_result``: the submit's answer, ``{"request_sha256", "response"}`` (JSON),
    kept for ``submitted_result`` to replay; written in the same UPDATE."""
    lease.completed_at = now or utcnow()
    lease.draft = None
    if submit_result is not None:
        lease.submit_result = submit_result
    session.flush()
    return lease


def submitted_result(
    session: Session, *, lease: Lease, request_sha256: str
) -> dict[str, Any] | None:
    """For a retried submit: the stored answer of this done lease, if the request is the same.

    None while the lease is not done (or was done before answers were stored); Conflict when
    it was submitted with a different request (``request_sha256`` of the submit body).
    """
    if lease.completed_at is None or not lease.submit_result:
        return None
    stored = lease.submit_result
    if stored.get("request_sha256") != request_sha256:
        raise Conflict(
            f"lease {lease.id} was already submitted with different content; "
            "ask for the next image with POST /api/tasks/next"
        )
    response = stored.get("response")
    return dict(response) if isinstance(response, dict) else None


def save_draft(session: Session, *, lease_id: int, draft: dict[str, Any]) -> None:
    """Store work on a lease whatever its state (used when a submit fails part-way)."""
    get_lease(session, lease_id=lease_id).draft = draft
    session.flush()


def release(
    session: Session,
    *,
    lease_id: int,
    user_id: int,
    draft: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Lease:
    """Give a lease back early (the image becomes free); a given draft is kept for later."""
    lease = own_lease(session, lease_id=lease_id, user_id=user_id)
    if lease.completed_at is not None:
        raise Conflict(f"lease {lease_id} was already submitted")
    now = now or utcnow()
    lease.expires_at = min(lease.expires_at, now)
    if draft is not None:
        lease.draft = draft
    session.flush()
    return lease
