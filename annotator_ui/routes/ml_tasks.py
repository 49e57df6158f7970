"""Task images of the ``/ml`` (Label Studio ML backend) endpoints: the ingested image a task
names, and whether the request's user may read it or write into it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import HTTPException
from sqlalchemy.orm import Session

from annotator_ui.routes.tasks import ensure_can_read
from db import lease_lookups
from db.errors import PermissionDenied
from db.images import require_ok
from db.models import Image, User
from engine.interop.label_studio import LabelConfig, find_task_image, task_image_name


def _readable(session: Session, user: User | None, image: Image) -> bool:
    if user is None:  # ml_backend_auth = "none" (loopback only)
        return True
    try:
        ensure_can_read(session, user=user, image_id=image.id)
    except PermissionDenied:
        return False
    return True


def find_image(
    session: Session, task: Any, cfg: LabelConfig, user: User | None
) -> tuple[Image | None, str]:
    """The ingested image a task names, if ``user`` may read it, else (None, reason).

    Only database rows are consulted (sha256, id, or the uri matched against the task's
    URL/path string); the server's filesystem is never looked at with a client's path. An
    image the user may not read gets the same answer as one that is not there."""
    data = task.get("data") if isinstance(task, dict) else None
    image, reason = find_task_image(session, data or {}, value_key=cfg.image_value)
    if image is not None and _readable(session, user, image):
        return image, ""
    if image is not None or not reason:
        name = task_image_name(data, cfg.image_value) if isinstance(data, dict) else None
        reason = (
            f"no ingested image matches {name!r} (ingest it first)"
            if name
            else "task data names no image"
        )
    return None, reason


def image_for(session: Session, task: Any, cfg: LabelConfig, user: User | None) -> Image:
    image, reason = find_image(session, task, cfg, user)
    if image is None:
        raise HTTPException(
            status_code=404,
            detail=f"task {task.get('id') if isinstance(task, dict) else '?'}: {reason}. "
            "Ingest the image, or export tasks with `dataengine export --format label-studio`"
            " (annotators: only images leased to you, POST /api/tasks/next).",
        )
    return require_ok(image=image)


def ensure_can_write(session: Session, settings: Any, user: User | None, image: Image) -> None:
    """Webhook writes: nobody writes into an image someone else holds under a live lease;
    an annotator only into an image under their own annotate lease, live or ended at most
    ``event_grace_minutes`` ago (the same rule as their effort events)."""
    others = lease_lookups.live_holders(session, image_id=image.id) - {user.id if user else None}
    if others:
        raise HTTPException(
            status_code=409,
            detail=f"image {image.id} is being annotated under another user's live lease; "
            "send the annotation again after it is submitted or expires",
        )
    if user is not None and user.role == "annotator":
        held = lease_lookups.recent_lease(
            session,
            user_id=user.id,
            image_id=image.id,
            stages=("annotate",),
            grace=dt.timedelta(minutes=settings.event_grace_minutes),
        )
        if held is None:
            raise HTTPException(
                status_code=403,
                detail=f"you hold no lease on image {image.id}: ask for it with "
                "POST /api/tasks/next, or send Label Studio webhooks with a reviewer's token",
            )
