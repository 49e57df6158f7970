"""Effort events: batches from the client, stored once per UUID; the effort derivation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from annotator_ui.deps import CurrentUser, ReviewerUser, SessionDep, SettingsDep
from annotator_ui.routes.tasks import ensure_can_read
from annotator_ui.schemas import EventsIn, EventsOut
from db import events as dbe
from engine.flywheel.events import ALL_KINDS

router = APIRouter(tags=["events"])
IdleQ = Annotated[
    float | None,
    Query(gt=0, le=86400, description="Idle cap in seconds for this derivation (default: "
          "the configured DATAENGINE_IDLE_SECONDS)."),
]  # fmt: skip


@router.post("/api/events")
def post_events(body: EventsIn, session: SessionDep, user: CurrentUser) -> EventsOut:
    """Store a batch of events (shape: ``schemas.EventIn``), each UUID once.

    Replaying a batch stores nothing new and acknowledges every UUID again; an event
    that cannot be stored (unknown kind, someone else's lease ...) is acknowledged and
    reported in ``rejected`` (retrying it would not help), the others are stored.
    """
    result = dbe.record(session, user_id=user.id, events=body.events, kinds=ALL_KINDS)
    session.commit()
    return EventsOut(**result)


@router.get("/api/images/{image_id}/events")
def image_events(image_id: int, session: SessionDep, user: ReviewerUser) -> list[dict[str, Any]]:
    """Every event of an image, in order (reviewers and admins)."""
    return [dbe.as_dict(e) for e in dbe.list_events(session, image_id=image_id)]


@router.get("/api/images/{image_id}/effort")
def image_effort(
    image_id: int,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    idle_seconds: IdleQ = None,
) -> dict[str, Any]:
    """Active time of the image and of each mask, with every gap and the rule applied to it
    (``docs/effort.md``; the same derivation ``/api/metrics`` uses, so ``per_image`` equals
    the image's seconds there). ``idle_seconds`` overrides the configured gap cap."""
    from engine.flywheel.effort_loader import image_effort as derive

    ensure_can_read(session, user=user, image_id=image_id)
    idle = idle_seconds if idle_seconds is not None else settings.idle_seconds
    return {"image_id": image_id, **derive(session, image_id=image_id, idle_s=idle).as_dict()}
