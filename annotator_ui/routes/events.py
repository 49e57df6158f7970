"""Effort events: batches from the client, stored once per UUID; the effort derivation.

Who may write what (``rights_for``): reviewers and admins any kind on any image; annotators
any kind, on an image only under their own annotate lease on it, live or ended at most
``event_grace_minutes`` ago; curators only ``CURATION_KINDS``, on an image only under their
own curation lease (same window). Refused events are never stored, so effort figures never
count them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import ValidationError

from annotator_ui.deps import CurrentUser, ReviewerUser, SessionDep, SettingsDep
from annotator_ui.routes.tasks import ensure_can_read
from annotator_ui.schemas import EventIn, EventRejected, EventsIn, EventsOut
from db import events as dbe
from db.models import User
from engine.flywheel.events import ALL_KINDS, CURATION_KINDS
from engine.settings import Settings
from engine.telemetry import EVENTS_STORED

router = APIRouter(tags=["events"])
LEASE_STAGES = {"annotator": ("annotate",), "curator": ("generalist", "specialist")}


def rights_for(user: User, settings: Settings) -> dbe.WriteRights:
    """The caller's event-writing rights (module docstring)."""
    return dbe.WriteRights(
        user_id=user.id,
        known=frozenset(ALL_KINDS),
        kinds=frozenset(CURATION_KINDS if user.role == "curator" else ALL_KINDS),
        stages=LEASE_STAGES.get(user.role),
        grace=dt.timedelta(minutes=settings.event_grace_minutes),
    )


def _uuid_of(item: Any) -> str | None:
    """The item's uuid if it is one the client could have made (to acknowledge it)."""
    uuid = item.get("uuid") if isinstance(item, dict) else None
    if isinstance(uuid, str) and 8 <= len(uuid) <= 36 and "\x00" not in uuid:
        return uuid
    return None


def _reason(err: ValidationError) -> str:
    """Field and message of each error, never the offending value."""
    parts = []
    for e in err.errors(include_input=False, include_url=False):
        loc = ".".join(str(x) for x in e.get("loc", ()))
        parts.append(f"{loc}: {e['msg']}" if loc else str(e["msg"]))
    return "; ".join(parts)


IdleQ = Annotated[
    float | None,
    Query(gt=0, le=86400, description="Idle cap in seconds for this derivation (default: "
          "the configured DATAENGINE_IDLE_SECONDS)."),
]  # fmt: skip


@router.post("/api/events")
def post_events(
    body: EventsIn, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> EventsOut:
    """Store a batch of events (each item: ``schemas.EventIn``), each UUID once.

    Each item is validated on its own: a malformed one (wrong type, NaN, NUL, a payload
    that is not an object or too large/deep) or one the caller may not write (module
    docstring) is reported in ``rejected`` with its index and reason and, when it has a
    readable uuid, acknowledged (retrying it would not help); the others are stored.
    Replaying a batch stores nothing new and acknowledges every UUID again.
    """
    valid: list[dict[str, Any]] = []
    positions: list[int] = []
    refused: list[EventRejected] = []
    acknowledged: list[str] = []
    for index, item in enumerate(body.events):
        if not isinstance(item, dict):
            refused.append(
                EventRejected(index=index, uuid=None, reason="an event must be an object")
            )
            continue
        try:
            valid.append(EventIn.model_validate(item).model_dump())
        except ValidationError as err:
            uuid = _uuid_of(item)
            refused.append(EventRejected(index=index, uuid=uuid, reason=_reason(err)))
            if uuid is not None:
                acknowledged.append(uuid)
            continue
        positions.append(index)
    result = dbe.record(session, rights=rights_for(user, settings), events=valid)
    session.commit()
    EVENTS_STORED.inc(result["stored"])
    refused += [
        EventRejected(index=positions[r["index"]], uuid=r["uuid"], reason=r["reason"])
        for r in result["rejected"]
    ]
    return EventsOut(
        acknowledged=acknowledged + result["acknowledged"],
        stored=result["stored"],
        duplicates=result["duplicates"],
        rejected=sorted(refused, key=lambda r: r.index),
    )


@router.get("/api/images/{image_id}/events")
def image_events(image_id: int, session: SessionDep, user: ReviewerUser) -> list[dict[str, Any]]:
    """Every event of an image, in order (reviewers and admins); payloads as
    ``db.events.as_dict`` lists them (always objects, depth-capped)."""
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
