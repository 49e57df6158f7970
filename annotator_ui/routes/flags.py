"""Flags: an annotator flags an image for a reviewer (with a reason); reviewers list the
open flags of a project (the "Flagged" page) and resolve them."""

from __future__ import annotations

from fastapi import APIRouter

from annotator_ui.deps import CurrentUser, ReviewerUser, SessionDep
from annotator_ui.routes.tasks import ensure_can_read
from annotator_ui.schemas import FlagIn, FlagOut, ResolveIn
from db import flags
from db.projects import get_project

router = APIRouter(tags=["flags"])


@router.post("/api/images/{image_id}/flags", status_code=201)
def flag_image(image_id: int, body: FlagIn, session: SessionDep, user: CurrentUser) -> FlagOut:
    """Flag an image I can see (an annotator: one I hold or held) for a reviewer."""
    ensure_can_read(session, user=user, image_id=image_id)
    flag = flags.flag_image(
        session, image_id=image_id, user_id=user.id, reason=body.reason, lease_id=body.lease_id
    )
    session.commit()
    row = next(
        r for r in flags.list_flags(session, project_id=flag.image.project_id) if r["id"] == flag.id
    )
    return FlagOut(**row)


@router.get("/api/projects/{project_id}/flags")
def project_flags(
    project_id: int, session: SessionDep, user: ReviewerUser, resolved: bool = False
) -> list[FlagOut]:
    """Open flags of the project, newest first (``resolved=true``: the resolved ones)."""
    get_project(session, project_id=project_id)
    return [
        FlagOut(**r) for r in flags.list_flags(session, project_id=project_id, resolved=resolved)
    ]


@router.post("/api/flags/{flag_id}/resolve")
def resolve(flag_id: int, body: ResolveIn, session: SessionDep, user: ReviewerUser) -> FlagOut:
    """Close a flag (409 when already closed)."""
    flag = flags.resolve_flag(session, flag_id=flag_id, user_id=user.id, resolution=body.resolution)
    session.commit()
    project_id = flag.image.project_id
    row = next(
        r
        for r in flags.list_flags(session, project_id=project_id, resolved=True)
        if r["id"] == flag.id
    )
    return FlagOut(**row)
