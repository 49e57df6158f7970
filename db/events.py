"""The append-only effort log: store client events once per UUID, read them back in order.

An event dict (the client's shape, see ``engine.flywheel.events``): ``uuid`` (str, <= 36),
``session_id`` (str), ``seq`` (int, order within the session), ``client_time`` (float ms,
monotonic within the session), ``visible`` (bool), ``kind`` (str), ``image_id`` (int|None),
``mask_id`` (int|None), ``lease_id`` (int|None), ``payload`` (dict).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, null, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.lease_lookups import is_recent, recent_lease
from db.models import Event, Image, Lease, Mask, utcnow


@dataclass(frozen=True)
class WriteRights:
    """What one caller may write into the effort log.

    ``known``: every kind the log accepts; ``kinds``: those this caller may send;
    ``stages``: None = any image (reviewers, admins), else an event naming an image needs
    the caller's own lease on it in one of these stages, live or ended at most ``grace`` ago.
    """

    user_id: int
    known: frozenset[str]
    kinds: frozenset[str]
    stages: tuple[str, ...] | None
    grace: dt.timedelta = dt.timedelta(minutes=15)


def _problem(
    session: Session,
    ev: dict[str, Any],
    rights: WriteRights,
    checked: dict[tuple[Any, Any, Any], str | None],
) -> str | None:
    """Why this (shape-checked) event cannot be stored for this caller, or None.
    ``checked`` caches the database checks per (image, mask, lease) within one batch."""
    kind = ev.get("kind")
    if kind not in rights.known:
        return f"unknown kind {kind!r}"
    if kind not in rights.kinds:
        allowed = ", ".join(sorted(rights.kinds)) or "none"
        return f"kind {kind!r} is not one your role may send (allowed: {allowed})"
    t = ev.get("client_time")
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        return "client_time must be a finite number of milliseconds"
    if not isinstance(ev.get("session_id"), str) or not ev["session_id"]:
        return "session_id must be a non-empty string"
    key = (ev.get("image_id"), ev.get("mask_id"), ev.get("lease_id"))
    if key not in checked:
        checked[key] = _target_problem(session, rights, *key)
    return checked[key]


def _target_problem(
    session: Session, rights: WriteRights, image_id: Any, mask_id: Any, lease_id: Any
) -> str | None:
    """Why the caller may not write an event about this image / mask / lease, or None.
    (Checked in this order; a lease on the named image proves the image exists, and its own
    columns decide whether it is recent enough: no further query for the usual event.)"""
    lease = session.get(Lease, lease_id) if lease_id is not None else None
    image_known = lease is not None and lease.image_id == image_id
    if image_id is not None and not image_known and session.get(Image, image_id) is None:
        return f"no image with id {image_id}"
    if mask_id is not None:
        mask = session.get(Mask, mask_id)
        if mask is None or (image_id is not None and mask.image_id != image_id):
            return f"no mask {mask_id} on image {image_id}"
        image_id = mask.image_id
    if lease_id is not None:
        if lease is None or lease.user_id != rights.user_id:
            return f"lease {lease_id} is not yours"
        if image_id is not None and lease.image_id != image_id:
            return f"lease {lease_id} is for image {lease.image_id}, not image {image_id}"
        image_id = lease.image_id
    if rights.stages is not None and image_id is not None:
        if lease is not None:  # the caller's, on this image (checked above)
            held = lease if is_recent(lease, stages=rights.stages, grace=rights.grace) else None
        else:
            held = recent_lease(
                session,
                user_id=rights.user_id,
                image_id=image_id,
                stages=rights.stages,
                grace=rights.grace,
            )
        if held is None:
            minutes = rights.grace.total_seconds() / 60
            return (
                f"you hold no lease on image {image_id} (live, or ended within {minutes:g} min): "
                "events are accepted only for images you work on (POST /api/tasks/next)"
            )
    return None


def _stored_uuids(session: Session, uuids: list[str]) -> set[str]:
    """Which of ``uuids`` are stored events."""
    if not uuids:
        return set()
    return set(session.scalars(select(Event.uuid).where(Event.uuid.in_(uuids))))


def _values(ev: dict[str, Any], user_id: int, now: dt.datetime) -> dict[str, Any]:
    """The ``event`` row of a checked event (column -> value)."""
    return {
        "uuid": ev["uuid"],
        "user_id": user_id,
        "image_id": ev.get("image_id"),
        "mask_id": ev.get("mask_id"),
        "lease_id": ev.get("lease_id"),
        "session_id": ev["session_id"][:64],
        "seq": int(ev.get("seq") or 0),
        "kind": str(ev["kind"])[:32],
        "payload": dict(ev.get("payload") or {}),
        "client_time": float(ev["client_time"]),
        "visible": bool(ev.get("visible", True)),
        "server_time": now,
    }


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows`` (``_values``), skipping uuids stored meanwhile by a concurrent batch;
    returns how many were stored. One ``INSERT ... ON CONFLICT (uuid) DO NOTHING`` on
    PostgreSQL and SQLite; elsewhere a savepoint for the batch, then one per row on conflict."""
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        # Core executemany ("insertmanyvalues"): one statement, compiled once and cached; a
        # multi-row ``.values(rows)`` would be compiled anew for every batch (a profile of 20
        # annotators: 18 % of the app's CPU went to that compile).
        table = Event.__table__
        stmt = insert(table).on_conflict_do_nothing(index_elements=["uuid"])
        return len(session.execute(stmt.returning(table.c.uuid), rows).all())
    try:
        with session.begin_nested():
            session.add_all([Event(**row) for row in rows])
        return len(rows)
    except IntegrityError:
        stored = 0
        for row in rows:
            try:
                with session.begin_nested():
                    session.add(Event(**row))
            except IntegrityError:  # the same uuid arrived concurrently: stored once already
                continue
            stored += 1
        return stored


def record(
    session: Session, *, rights: WriteRights, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Store each new event once; replaying a batch stores nothing new.

    ``events``: dicts of the module docstring's shape, already type-checked (the API
    validates each with ``annotator_ui.schemas.EventIn``); here each is checked against
    the database and the caller's ``rights`` (kind, image, mask, lease).

    Returns ``{"acknowledged": [uuid...], "stored": n, "duplicates": n,
    "rejected": [{"index", "uuid", "reason"}]}`` (``index``: position in ``events``): every
    uuid of the batch is acknowledged (the client may forget it), including rejected ones,
    which are reported and not stored (one bad event never stops the batch).
    """
    user_id = rights.user_id
    seen: set[str] = set()
    checked: dict[tuple[Any, Any, Any], str | None] = {}
    new: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    stored = duplicates = 0
    for index, ev in enumerate(events):
        uuid = ev.get("uuid")
        if isinstance(uuid, str) and uuid in seen:
            duplicates += 1
            continue
        reason = _problem(session, ev, rights, checked)
        if reason is not None:
            refused.append({"index": index, "uuid": uuid, "reason": reason})
            continue
        new.append(ev)
        seen.add(uuid)
    # No look-up first: a replayed event the caller may still write is skipped by the insert
    # (ON CONFLICT); one it may no longer write (its lease ended since) is a duplicate, not a
    # refusal, when it is stored already: only refusals are looked up.
    stored_already = _stored_uuids(
        session, [r["uuid"] for r in refused if isinstance(r["uuid"], str)]
    )
    rejected = [r for r in refused if r["uuid"] not in stored_already]
    duplicates += len(refused) - len(rejected)
    acknowledged = [ev["uuid"] for ev in events if isinstance(ev.get("uuid"), str)]
    if new:
        stored = _insert_new(session, [_values(ev, user_id, utcnow()) for ev in new])
        duplicates += len(new) - stored  # stored before (a replay), or by a concurrent batch
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


LISTED_DEPTH = 16  # payload levels returned by ``as_dict``; deeper ones are summarised


def _listable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of a stored payload value: at most ``LISTED_DEPTH`` levels (deeper
    containers become a note), non-finite floats as None. Rows written before events were
    validated may hold anything; listing them must never fail."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict | list):
        if depth >= LISTED_DEPTH:
            return f"<{type(value).__name__} nested deeper than {LISTED_DEPTH} levels, not listed>"
        if isinstance(value, dict):
            return {str(k): _listable(v, depth + 1) for k, v in value.items()}
        return [_listable(v, depth + 1) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return repr(value)


def as_dict(ev: Event) -> dict[str, Any]:
    """An event row as the client sent it (plus ``user_id`` and ``server_time`` ISO).

    ``payload`` is always an object (an old non-object payload is listed as
    ``{"value": ...}``), cut at ``LISTED_DEPTH`` levels; a non-finite ``client_time`` is None.
    """
    payload = _listable(ev.payload)
    if not isinstance(payload, dict):
        payload = {"value": payload}
    client_time = (
        ev.client_time if ev.client_time is None or math.isfinite(ev.client_time) else None
    )
    return {
        "uuid": ev.uuid,
        "user_id": ev.user_id,
        "image_id": ev.image_id,
        "mask_id": ev.mask_id,
        "lease_id": ev.lease_id,
        "session_id": ev.session_id,
        "seq": ev.seq,
        "kind": ev.kind,
        "payload": payload,
        "client_time": client_time,
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
