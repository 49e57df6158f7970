"""The append-only effort log: store client events once per UUID, read them back in order.

An event dict (the client's shape, see ``engine.flywheel.events``): ``uuid`` (str, <= 36),
``session_id`` (str), ``seq`` (int, order within the session), ``client_time`` (float ms,
monotonic within the session), ``visible`` (bool), ``kind`` (str), ``image_id`` (int|None),
``mask_id`` (int|None), ``lease_id`` (int|None), ``payload`` (dict).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, null, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Event, Image, Lease, Mask


def _problem(
    session: Session, ev: dict[str, Any], user_id: int, kinds: frozenset[str]
) -> str | None:
    """Why this event cannot be stored, or None."""
    uuid = ev.get("uuid")
    if not isinstance(uuid, str) or not 8 <= len(uuid) <= 36:
        return "uuid must be a string of 8 to 36 characters"
    if kinds and ev.get("kind") not in kinds:
        return f"unknown kind {ev.get('kind')!r}"
    t = ev.get("client_time")
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        return "client_time must be a finite number of milliseconds"
    if not isinstance(ev.get("session_id"), str) or not ev["session_id"]:
        return "session_id must be a non-empty string"
    image_id = ev.get("image_id")
    if image_id is not None and session.get(Image, image_id) is None:
        return f"no image with id {image_id}"
    mask_id = ev.get("mask_id")
    if mask_id is not None:
        mask = session.get(Mask, mask_id)
        if mask is None or (image_id is not None and mask.image_id != image_id):
            return f"no mask {mask_id} on image {image_id}"
    lease_id = ev.get("lease_id")
    if lease_id is not None:
        lease = session.get(Lease, lease_id)
        if lease is None or lease.user_id != user_id:
            return f"lease {lease_id} is not yours"
    return None


def _row(ev: dict[str, Any], user_id: int) -> Event:
    return Event(
        uuid=ev["uuid"],
        user_id=user_id,
        image_id=ev.get("image_id"),
        mask_id=ev.get("mask_id"),
        lease_id=ev.get("lease_id"),
        session_id=ev["session_id"][:64],
        seq=int(ev.get("seq") or 0),
        kind=str(ev["kind"])[:32],
        payload=dict(ev.get("payload") or {}),
        client_time=float(ev["client_time"]),
        visible=bool(ev.get("visible", True)),
    )


def record(
    session: Session,
    *,
    user_id: int,
    events: list[dict[str, Any]],
    kinds: frozenset[str] | set[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Store each new event once; replaying a batch stores nothing new.

    Returns ``{"acknowledged": [uuid...], "stored": n, "duplicates": n,
    "rejected": [{"uuid", "reason"}]}``: every uuid of the batch is acknowledged (the
    client may forget it), including rejected ones, which are reported and not stored
    (one bad event never stops the batch).
    """
    kinds = frozenset(kinds)
    uuids = [e.get("uuid") for e in events if isinstance(e.get("uuid"), str)]
    existing = (
        set(session.scalars(select(Event.uuid).where(Event.uuid.in_(uuids)))) if uuids else set()
    )
    acknowledged: list[str] = []
    rejected: list[dict[str, Any]] = []
    stored = duplicates = 0
    seen: set[str] = set()
    for ev in events:
        uuid = ev.get("uuid")
        if isinstance(uuid, str) and (uuid in existing or uuid in seen):
            duplicates += 1
            acknowledged.append(uuid)
            continue
        reason = _problem(session, ev, user_id, kinds)
        if reason is not None:
            rejected.append({"uuid": uuid, "reason": reason})
            if isinstance(uuid, str):
                acknowledged.append(uuid)
            continue
        try:
            with session.begin_nested():
                session.add(_row(ev, user_id))
        except IntegrityError:  # the same uuid arrived concurrently: stored once already
            duplicates += 1
        else:
            stored += 1
        seen.add(uuid)
        acknowledged.append(uuid)
    return {
        "acknowledged": acknowledged,
        "stored": stored,
        "duplicates": duplicates,
        "rejected": rejected,
    }


def list_events(
    session: Session, *, image_id: int | None = None, user_id: int | None = None
) -> list[Event]:
    """Events in order: by session, then ``seq``, then client time."""
    q = select(Event)
    if image_id is not None:
        q = q.where(Event.image_id == image_id)
    if user_id is not None:
        q = q.where(Event.user_id == user_id)
    return list(
        session.scalars(q.order_by(Event.session_id, Event.seq, Event.client_time, Event.id))
    )


def as_dict(ev: Event) -> dict[str, Any]:
    """An event row as the client sent it (plus ``user_id`` and ``server_time`` ISO)."""
    return {
        "uuid": ev.uuid,
        "user_id": ev.user_id,
        "image_id": ev.image_id,
        "mask_id": ev.mask_id,
        "lease_id": ev.lease_id,
        "session_id": ev.session_id,
        "seq": ev.seq,
        "kind": ev.kind,
        "payload": ev.payload,
        "client_time": ev.client_time,
        "visible": ev.visible,
        "server_time": ev.server_time.isoformat(),
    }


EFFORT_COLUMNS = (
    Event.id, Event.image_id, Event.session_id, Event.seq, Event.client_time, Event.visible,
    Event.kind, Event.mask_id, Event.lease_id, Event.payload,
)  # fmt: skip


def effort_events(
    session: Session, *, image_ids: Sequence[int], payload_kinds: Sequence[str] | None = None
) -> list[Any]:
    """The events that count as annotation effort of ``image_ids`` (rows with the
    ``EFFORT_COLUMNS``): every event of the images except those sent under a lease of another
    stage (curation work is not annotation effort). Unordered; the derivation orders them.

    ``payload_kinds``: read the payload only for these kinds (others get None), which spares
    decoding JSON the caller never looks at.
    """
    if not image_ids:
        return []
    payload: Any = Event.payload
    if payload_kinds is not None:
        payload = case((Event.kind.in_(list(payload_kinds)), Event.payload), else_=null())
    q = (
        select(*EFFORT_COLUMNS[:-1], payload.label("payload"))
        .outerjoin(Lease, Lease.id == Event.lease_id)
        .where(
            Event.image_id.in_(list(image_ids)),
            or_(Event.lease_id.is_(None), Lease.stage == "annotate"),
        )
    )
    return list(session.execute(q))
