"""The thin loader between the database and the pure effort derivation.

``engine.flywheel.effort.derive_effort`` is the one definition of effort; this module only
reads what it needs (``db.events.effort_events``: the images' annotation-stage events;
``db.mask_listing.parent_links``: the masks' parent links) so that ``GET /api/images/{id}/effort``
and the metrics' per-image derivation read exactly the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from db.events import effort_events
from db.mask_listing import parent_links
from engine.flywheel.effort import DEFAULT_IDLE_S, PAYLOAD_KINDS, Effort, derive_effort


def load_effort(
    session: Session,
    *,
    image_ids: Sequence[int],
    idle_s: float = DEFAULT_IDLE_S,
    keep_gaps: bool = True,
) -> Effort:
    """Effort of ``image_ids`` derived from their events with gaps capped at ``idle_s``
    (``keep_gaps`` False: totals only, no per-gap records)."""
    ids = sorted({int(i) for i in image_ids})
    rows = effort_events(session, image_ids=ids, payload_kinds=PAYLOAD_KINDS)
    parents = parent_links(session, image_ids=ids)
    return derive_effort(rows, idle_s=idle_s, parents=parents, keep_gaps=keep_gaps)


def image_effort(session: Session, *, image_id: int, idle_s: float = DEFAULT_IDLE_S) -> Effort:
    """Effort of one image (``GET /api/images/{id}/effort``)."""
    return load_effort(session, image_ids=[image_id], idle_s=idle_s)
