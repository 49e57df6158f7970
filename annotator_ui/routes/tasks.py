"""The work queue: next image with a lease, heartbeat, submit, release; projects (images:
``routes.images``).

Access rules (also used by ``routes.masks``):
- reading an image, its file or its masks: reviewers, admins and curators always; an
  annotator only with a live lease on it, or a past lease while nobody else holds a live
  one (nobody reads another annotator's work in progress);
- changing masks: reviewers and admins always; an annotator only under a live lease,
  otherwise 409 ``lease lost`` with the change kept in the lease's draft.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from annotator_ui import renditions
from annotator_ui.deps import CurrentUser, SessionDep, SettingsDep
from annotator_ui.schemas import (
    HeartbeatIn,
    NextIn,
    ProjectOut,
    SubmitIn,
    SubmitOut,
    TaskOut,
)
from db import lease_lookups, leases
from db.errors import Conflict, InvalidInput, LeaseLost, NotFound, PermissionDenied
from db.images import get_image, require_ok
from db.mask_listing import shown_status_counts
from db.masks import apply_ops
from db.models import Image, Lease, User, utcnow
from db.projects import get_project, hotkeys_of, list_projects

log = logging.getLogger(__name__)
router = APIRouter(tags=["tasks"])


STAGE_ROLES = {
    "annotate": ("annotator", "reviewer", "admin"),
    "generalist": ("curator", "reviewer", "admin"),
    "specialist": ("curator", "reviewer", "admin"),
}
SEE_ALL = ("reviewer", "admin", "curator")


# --- access helpers -------------------------------------------------------------------------


def ensure_can_read(session: Session, *, user: User, image_id: int) -> Image:
    """The image if ``user`` may see it (module docstring), else PermissionDenied/NotFound."""
    image = get_image(session, image_id=image_id)
    if user.role in SEE_ALL:
        return image
    now = utcnow()
    rows = session.execute(
        select(Lease.user_id, Lease.completed_at, Lease.expires_at).where(
            Lease.image_id == image_id
        )
    ).all()
    mine = [r for r in rows if r.user_id == user.id]
    live_mine = any(r.completed_at is None and r.expires_at > now for r in mine)
    live_other = any(
        r.user_id != user.id and r.completed_at is None and r.expires_at > now for r in rows
    )
    if live_mine or (mine and not live_other):
        return image
    raise PermissionDenied(
        f"image {image_id} is not assigned to you: ask for it with POST /api/tasks/next"
    )


def ensure_can_write(
    session: Session,
    *,
    user: User,
    image_id: int,
    lease_id: int | None,
    change: dict[str, Any],
) -> Lease | None:
    """The live lease an annotator works under (None for reviewers and admins).

    Without a live lease: the change is appended to the newest lease's draft
    (``draft["pending_ops"]``) and LeaseLost is raised; the caller commits first.
    """
    require_ok(image=get_image(session, image_id=image_id))  # no masks on a rejected file
    if user.role in ("reviewer", "admin") and lease_id is None:
        return None
    q = select(Lease).where(Lease.user_id == user.id, Lease.image_id == image_id)
    if lease_id is not None:
        q = q.where(Lease.id == lease_id)
    lease = session.scalars(q.order_by(Lease.id.desc()).limit(1)).first()
    if lease is None:
        raise PermissionDenied(
            f"you hold no lease on image {image_id}: ask for it with POST /api/tasks/next"
        )
    if leases.is_live(lease):
        return lease
    draft = dict(lease.draft or {})
    draft["pending_ops"] = [*draft.get("pending_ops", []), change]
    return leases.check_live(
        session, lease_id=lease.id, user_id=user.id, draft=draft, what="this change"
    )


def check_stage_access(session: Session, *, user: User, project_id: int, stage: str) -> None:
    """Raise PermissionDenied (403) when ``user``'s role may not work in ``stage``, then
    NotFound (404) when the project does not exist; checked before any lease is taken."""
    if user.role not in STAGE_ROLES[stage]:
        raise PermissionDenied(
            f"role {user.role!r} may not work in stage {stage!r}; needs one of: "
            + ", ".join(STAGE_ROLES[stage])
        )
    get_project(session, project_id=project_id)


def commit_then_raise(session: Session, err: Exception) -> None:
    """Keep what the failing call stored (a draft), then answer with ``err``."""
    session.commit()
    raise err


def check_draft(draft: dict[str, Any] | None, max_bytes: int) -> None:
    """413 when a draft is larger than ``max_bytes`` as compact JSON (the max_draft_bytes
    setting): every GET of the task returns it, so it must stay small."""
    if draft is None:
        return
    size = len(json.dumps(draft, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        raise HTTPException(
            status_code=413,
            detail=f"draft of {size} bytes is larger than {max_bytes} bytes; keep unsaved "
            "work small (submit it) or raise the max_draft_bytes setting",
        )


def _task(session: Session, lease: Lease, minutes: float) -> TaskOut:
    image = get_image(session, image_id=lease.image_id)
    project = get_project(session, project_id=image.project_id)
    labels = [str(x) for x in project.labels or []]
    return TaskOut.of(lease, image, labels, minutes, hotkeys_of(project=project))


# --- projects (read) --------------------------------------------------------------------


@router.get("/api/projects")
def projects(session: SessionDep, user: CurrentUser) -> list[ProjectOut]:
    """Projects with their taxonomy and annotate-queue counts."""
    return [
        ProjectOut.of(p, lease_lookups.queue_counts(session, project_id=p.id))
        for p in list_projects(session)
    ]


@router.get("/api/projects/{project_id}")
def project(project_id: int, session: SessionDep, user: CurrentUser) -> ProjectOut:
    p = get_project(session, project_id=project_id)
    return ProjectOut.of(p, lease_lookups.queue_counts(session, project_id=p.id))


# --- tasks ------------------------------------------------------------------------------------


@router.post("/api/tasks/next")
def next_task(
    body: NextIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> TaskOut:
    """My live lease in this project and stage, or a new one on a free image (404 when none)."""
    check_stage_access(session, user=user, project_id=body.project_id, stage=body.stage)
    lease = leases.next_lease(
        session,
        user_id=user.id,
        project_id=body.project_id,
        stage=body.stage,
        minutes=settings.lease_minutes,
    )
    out = _task(session, lease, settings.lease_minutes)  # read before the commit (see heartbeat)
    session.commit()
    _embed_ahead(request.app, lease.image_id)
    renditions.queue_ahead(request.app, lease.image_id, out.image.width)
    return out


EMBED_AHEAD = 4  # the leased image and the next few of the project


def _embed_ahead(app: Any, image_id: int) -> None:
    """Queue the embedding of this image and the next few (``annotator_ui.idle_work``: run
    while the process answers no request), so a decode rarely waits for the encoder."""
    seg = getattr(app.state, "segmenter", None)
    work = getattr(app.state, "idle_work", None)
    if work is not None and hasattr(seg, "embed_cached"):
        work.submit(("upcoming", image_id), lambda: _queue_upcoming(app, image_id))


def _queue_upcoming(app: Any, image_id: int) -> None:
    """Idle job: find the images from ``image_id`` on and queue one embedding job per image
    not cached yet (one job each, so requests arriving meanwhile wait for one image at most)."""
    with app.state.session_factory() as session:
        image = session.get(Image, image_id)
        if image is None:
            return
        upcoming = session.execute(
            select(Image.sha256, Image.uri)
            .where(Image.project_id == image.project_id, Image.id >= image.id, Image.status == "ok")
            .order_by(Image.id)
            .limit(EMBED_AHEAD)
        ).all()
    seg, max_pixels = app.state.segmenter, app.state.settings.max_image_pixels
    for sha, uri in upcoming:
        if sha and not seg.is_cached(sha):
            app.state.idle_work.submit(
                ("embed", sha), lambda s=sha, u=uri: _embed(seg, s, u, max_pixels)
            )


def _embed(seg: Any, sha256: str, uri: str, max_pixels: int) -> None:
    from engine.imageio import load_rgb

    seg.embed_cached(sha256, lambda: load_rgb(uri, max_pixels=max_pixels))


@router.get("/api/tasks")
def my_tasks(session: SessionDep, settings: SettingsDep, user: CurrentUser) -> list[TaskOut]:
    """My leases, newest first (live, lost and done; at most 50)."""
    rows = session.scalars(
        select(Lease).where(Lease.user_id == user.id).order_by(Lease.id.desc()).limit(50)
    ).all()
    return [_task(session, lease, settings.lease_minutes) for lease in rows]


@router.get("/api/tasks/{lease_id}")
def task(lease_id: int, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> TaskOut:
    """One lease with its draft: the owner's, or any for reviewers and admins."""
    lease = leases.get_lease(session, lease_id=lease_id)
    if lease.user_id != user.id and user.role not in ("reviewer", "admin"):
        raise PermissionDenied("this lease belongs to someone else")
    return _task(session, lease, settings.lease_minutes)


@router.post("/api/tasks/{lease_id}/heartbeat")
def heartbeat(
    lease_id: int, body: HeartbeatIn, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> TaskOut:
    """Keep the lease alive (and store a draft); 409 when it was already lost."""
    check_draft(body.draft, settings.max_draft_bytes)
    try:
        lease = leases.heartbeat(
            session,
            lease_id=lease_id,
            user_id=user.id,
            minutes=settings.lease_minutes,
            draft=body.draft,
        )
    except LeaseLost as err:
        commit_then_raise(session, err)
    # The answer's rows are read inside the transaction: a read after the commit would open
    # another one, which closing the session must then roll back (a round trip per request).
    out = _task(session, lease, settings.lease_minutes)
    session.commit()
    return out


def mask_shape(rle: Any, *, height: Any, width: Any, max_bytes: int) -> dict[str, Any]:
    """A client's COCO RLE -> ``{"rle", "bbox", "area"}`` for ``db.masks``; 422 when bad.

    The RLE is checked against the image's (height, width) by ``engine.mask_payload``
    *before* it is decoded (size, runs >= 0 summing to h*w, length <= ``max_bytes``).
    """
    from engine.mask_payload import rle_shape

    try:
        return rle_shape(rle, height=height, width=width, max_bytes=max_bytes)
    except ValueError as err:
        raise InvalidInput(f"mask rejected: {err}") from err


def _op_shape(op: dict[str, Any], image: Image, max_bytes: int) -> dict[str, Any]:
    """Add bbox and area to an op carrying an RLE (checked, then decoded at full resolution)."""
    if not op.get("rle"):
        return op
    try:
        shape = mask_shape(op["rle"], height=image.height, width=image.width, max_bytes=max_bytes)
    except InvalidInput as err:
        raise InvalidInput(f"operation {op.get('op')}: {err}") from err
    return {**op, **shape}


def _warm_metrics(app: Any, *, image_id: int, idle_s: float) -> None:
    """Derive the image's metrics cache row (a few ms) so metric queries stay warm; an idle
    job (``annotator_ui.idle_work``) after the submit, in its own session.

    Best effort: the submit is already committed, and a failure here only means the next
    metrics query derives the row itself.
    """
    from engine.flywheel.metrics_project import refresh_image_cache

    with app.state.session_factory() as session:
        try:
            refresh_image_cache(session, image_id=image_id, idle_s=idle_s)
            session.commit()
        except SQLAlchemyError as err:
            session.rollback()
            log.warning("metrics cache for image %s not refreshed: %s", image_id, err)


MASK_OP_ROLES = STAGE_ROLES["annotate"]


def _request_sha256(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@router.post("/api/tasks/{lease_id}/submit")
def submit(
    lease_id: int,
    body: SubmitIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> SubmitOut:
    """Apply any pending ops and finish the image.

    Mask ops are taken only on an ``annotate`` lease from annotators, reviewers and admins
    (403 otherwise, nothing changed). 409 when the lease was lost (expired or released) or
    a mask changed meanwhile; the submitted work is then kept as the lease's draft and
    nothing is lost. Submitting the same body again on a submitted lease (a retry whose
    answer was lost) returns the first answer; a different body gets 409.
    """
    payload = body.model_dump(mode="json")
    lease = leases.own_lease(session, lease_id=lease_id, user_id=user.id, lock=True)
    if payload["ops"] and (lease.stage != "annotate" or user.role not in MASK_OP_ROLES):
        raise PermissionDenied(
            f"mask operations are taken only on annotate leases from "
            f"{', '.join(MASK_OP_ROLES)}; this is a {lease.stage!r} lease and you are "
            f"{user.role!r}: submit it without ops"
        )
    request_sha256 = _request_sha256(payload)
    replay = leases.submitted_result(session, lease=lease, request_sha256=request_sha256)
    if replay is not None:
        return SubmitOut.model_validate(replay)
    try:
        lease = leases.check_live(session, lease_id=lease_id, user_id=user.id, draft=payload)
    except LeaseLost as err:
        commit_then_raise(session, err)
    image = get_image(session, image_id=lease.image_id)
    try:
        result = apply_ops(
            session,
            image_id=lease.image_id,
            user_id=user.id,
            ops=[_op_shape(op, image, settings.mask_payload_max_bytes) for op in payload["ops"]],
        )
    except (Conflict, InvalidInput, NotFound) as err:
        session.rollback()
        leases.save_draft(session, lease_id=lease_id, draft=payload)
        session.commit()
        raise type(err)(f"{err} (your submission was kept as a draft on lease {lease_id})") from err
    counts = shown_status_counts(session, image_id=lease.image_id, lease_id=lease.id, arm=lease.arm)
    out = SubmitOut(
        lease_id=lease.id,
        image_id=lease.image_id,
        completed_at=utcnow(),
        created=result["created"],
        counts=counts,
    )
    leases.complete(  # one UPDATE: done, and the answer a retry gets back
        session,
        lease=lease,
        now=out.completed_at,
        submit_result={"request_sha256": request_sha256, "response": out.model_dump(mode="json")},
    )
    session.commit()
    image_id, idle_s, app = lease.image_id, settings.idle_seconds, request.app
    work = getattr(app.state, "idle_work", None)
    if work is not None:
        work.submit(
            ("metrics", image_id), lambda: _warm_metrics(app, image_id=image_id, idle_s=idle_s)
        )
    return out


@router.post("/api/tasks/{lease_id}/release")
def release(
    lease_id: int, body: HeartbeatIn, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> TaskOut:
    """Give the image back unfinished; a draft sent along is kept for when I return."""
    check_draft(body.draft, settings.max_draft_bytes)
    lease = leases.release(session, lease_id=lease_id, user_id=user.id, draft=body.draft)
    out = _task(session, lease, settings.lease_minutes)  # read before the commit
    session.commit()
    return out
