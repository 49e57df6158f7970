"""The work queue: next image with a lease, heartbeat, submit, release; images and projects.

Access rules (also used by ``routes.masks``):
- reading an image, its file or its masks: reviewers, admins and curators always; an
  annotator only with a live lease on it, or a past lease while nobody else holds a live
  one (nobody reads another annotator's work in progress);
- changing masks: reviewers and admins always; an annotator only under a live lease,
  otherwise 409 ``lease lost`` with the change kept in the lease's draft.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from annotator_ui.deps import CurrentUser, SessionDep, SettingsDep
from annotator_ui.schemas import (
    HeartbeatIn,
    ImageOut,
    NextIn,
    ProjectOut,
    SubmitIn,
    SubmitOut,
    TaskOut,
)
from db import leases
from db.errors import Conflict, InvalidInput, LeaseLost, NotFound, PermissionDenied
from db.images import get_image
from db.masks import apply_ops
from db.models import Image, Lease, Mask, User, utcnow
from db.projects import get_project, list_projects

log = logging.getLogger(__name__)
router = APIRouter(tags=["tasks"])


def setup(app: Any) -> None:
    """Called by the app factory: embed the images people are about to open in the
    background (``engine.segment.precompute``), so nobody waits for the encoder."""
    from engine.segment.precompute import attach_precompute

    attach_precompute(app)


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
    get_image(session, image_id=image_id)
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
    return TaskOut.of(lease, image, [str(x) for x in project.labels or []], minutes)


# --- projects (read) --------------------------------------------------------------------


@router.get("/api/projects")
def projects(session: SessionDep, user: CurrentUser) -> list[ProjectOut]:
    """Projects with their taxonomy and annotate-queue counts."""
    return [
        ProjectOut.of(p, leases.queue_counts(session, project_id=p.id))
        for p in list_projects(session)
    ]


@router.get("/api/projects/{project_id}")
def project(project_id: int, session: SessionDep, user: CurrentUser) -> ProjectOut:
    p = get_project(session, project_id=project_id)
    return ProjectOut.of(p, leases.queue_counts(session, project_id=p.id))


# --- tasks ------------------------------------------------------------------------------------


@router.post("/api/tasks/next")
def next_task(
    body: NextIn, request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> TaskOut:
    """My live lease in this project and stage, or a new one on a free image (404 when none)."""
    if user.role not in STAGE_ROLES[body.stage]:
        raise PermissionDenied(
            f"role {user.role!r} may not work in stage {body.stage!r}; needs one of: "
            + ", ".join(STAGE_ROLES[body.stage])
        )
    get_project(session, project_id=body.project_id)
    lease = leases.next_lease(
        session,
        user_id=user.id,
        project_id=body.project_id,
        stage=body.stage,
        minutes=settings.lease_minutes,
    )
    session.commit()
    _precompute_next(request, session, lease)
    return _task(session, lease, settings.lease_minutes)


def _precompute_next(request: Request, session: Session, lease: Lease) -> None:
    """Ask the embedding precompute (if attached) for this image and the next few."""
    if getattr(request.app.state, "precomputer", None) is None:
        return
    from engine.segment.precompute import schedule

    image = session.get(Image, lease.image_id)
    upcoming = session.scalars(
        select(Image)
        .where(Image.project_id == image.project_id, Image.id >= image.id, Image.status == "ok")
        .order_by(Image.id)
        .limit(4)
    ).all()
    schedule(request.app, [(im.sha256, im.uri) for im in upcoming])


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
    session.commit()
    return _task(session, lease, settings.lease_minutes)


def _shape(op: dict[str, Any]) -> dict[str, Any]:
    """Add bbox and area to an op carrying an RLE (decoded here, full resolution)."""
    if not op.get("rle"):
        return op
    from engine.masks import decode_rle, encode_rle, mask_bbox

    try:
        arr = decode_rle(op["rle"])
    except ValueError as err:
        raise InvalidInput(f"mask is not a valid COCO RLE: {err}") from err
    return {**op, "rle": encode_rle(arr), "bbox": mask_bbox(arr), "area": int(arr.sum())}


def _warm_metrics(session: Session, *, image_id: int, idle_s: float) -> None:
    """Derive the image's metrics cache row now (a few ms) so metric queries stay warm.

    Best effort: the submit is already committed, and a failure here only means the next
    metrics query derives the row itself.
    """
    from engine.flywheel.metrics import refresh_image_cache

    try:
        refresh_image_cache(session, image_id=image_id, idle_s=idle_s)
        session.commit()
    except SQLAlchemyError as err:
        session.rollback()
        log.warning("metrics cache for image %s not refreshed: %s", image_id, err)


@router.post("/api/tasks/{lease_id}/submit")
def submit(
    lease_id: int, body: SubmitIn, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> SubmitOut:
    """Apply any pending ops and finish the image.

    409 when the lease was lost (expired or released) or a mask changed meanwhile; the
    submitted work is then kept as the lease's draft and nothing is lost.
    """
    payload = body.model_dump(mode="json")
    try:
        lease = leases.check_live(session, lease_id=lease_id, user_id=user.id, draft=payload)
    except LeaseLost as err:
        commit_then_raise(session, err)
    try:
        result = apply_ops(
            session,
            image_id=lease.image_id,
            user_id=user.id,
            ops=[_shape(op) for op in payload["ops"]],
        )
    except (Conflict, InvalidInput, NotFound) as err:
        session.rollback()
        leases.save_draft(session, lease_id=lease_id, draft=payload)
        session.commit()
        raise type(err)(f"{err} (your submission was kept as a draft on lease {lease_id})") from err
    leases.complete(session, lease=lease)
    session.commit()
    _warm_metrics(session, image_id=lease.image_id, idle_s=settings.idle_seconds)
    counts = dict(
        session.execute(
            select(Mask.status, func.count())
            .where(Mask.image_id == lease.image_id)
            .group_by(Mask.status)
        ).all()
    )
    return SubmitOut(
        lease_id=lease.id,
        image_id=lease.image_id,
        completed_at=lease.completed_at,
        created=result["created"],
        counts=counts,
    )


@router.post("/api/tasks/{lease_id}/release")
def release(
    lease_id: int, body: HeartbeatIn, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> TaskOut:
    """Give the image back unfinished; a draft sent along is kept for when I return."""
    check_draft(body.draft, settings.max_draft_bytes)
    lease = leases.release(session, lease_id=lease_id, user_id=user.id, draft=body.draft)
    session.commit()
    return _task(session, lease, settings.lease_minutes)


# --- images -----------------------------------------------------------------------------------


@router.get("/api/images/{image_id}")
def image_meta(image_id: int, session: SessionDep, user: CurrentUser) -> ImageOut:
    return ImageOut.of(ensure_can_read(session, user=user, image_id=image_id))


@router.get("/api/images/{image_id}/file", response_model=None)
def image_file(image_id: int, session: SessionDep, user: CurrentUser) -> Response:
    """The image in display orientation (EXIF applied), as the masks' pixel frame."""
    image = ensure_can_read(session, user=user, image_id=image_id)
    if image.status != "ok":
        raise NotFound(f"image {image_id} was rejected at ingest: {image.reason}")
    if image.exif_orientation in (None, 1) and image.format in ("JPEG", "PNG", "WEBP", "GIF"):
        if not Path(image.uri).is_file():
            raise NotFound(f"image file missing: {image.uri} (moved since ingest?)")
        return FileResponse(image.uri, headers={"Cache-Control": "private, max-age=3600"})
    from PIL import Image as PILImage

    from engine.imageio import load_rgb

    try:
        rgb = load_rgb(image.uri)
    except (OSError, ValueError) as err:
        raise HTTPException(status_code=404, detail=f"cannot read image file: {err}") from err
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG", quality=92)
    return Response(
        buf.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )
