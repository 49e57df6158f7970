"""Moving between images without losing anything: skip (to the back of my queue) and
previous (reopen the image I finished last). Both keep the draft sent along."""

from __future__ import annotations

from fastapi import APIRouter

from annotator_ui.deps import CurrentUser, SessionDep, SettingsDep
from annotator_ui.routes.tasks import _task, check_draft, check_stage_access
from annotator_ui.schemas import HeartbeatIn, NextIn, TaskOut
from db import navigation

router = APIRouter(tags=["tasks"])


@router.post("/api/tasks/{lease_id}/skip")
def skip(
    lease_id: int, body: HeartbeatIn, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> TaskOut:
    """Give the image back unfinished and move it to the back of my queue: the next
    ``/api/tasks/next`` hands me every other free image first. The draft is kept."""
    check_draft(body.draft, settings.max_draft_bytes)
    lease = navigation.skip(session, lease_id=lease_id, user_id=user.id, draft=body.draft)
    out = _task(session, lease, settings.lease_minutes)  # read before the commit
    session.commit()
    return out


@router.post("/api/tasks/previous")
def previous(
    body: NextIn, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> TaskOut:
    """Reopen the image I submitted or skipped last in this project (404 when there is
    none, 409 with the reason when it can't be reopened); my current image is given back."""
    check_stage_access(session, user=user, project_id=body.project_id, stage=body.stage)
    lease = navigation.previous_lease(
        session,
        user_id=user.id,
        project_id=body.project_id,
        stage=body.stage,
        minutes=settings.lease_minutes,
    )
    out = _task(session, lease, settings.lease_minutes)  # read before the commit
    session.commit()
    return out
