"""Human effort from the event log: the timing rules of DESIGN.md section 5.

Rules (the same rules ``engine.flywheel.metrics`` applies in SQL; a test checks they agree):

- Events are grouped by ``(image_id, session_id)`` and ordered by ``(client_time, seq)``;
  ``client_time`` is milliseconds, monotonic within a session.
- Each consecutive pair gives a *gap* ``t_i - t_{i-1}`` (seconds), capped at ``idle_s``.
  A gap counts as zero when the page was hidden after the earlier event (its ``visible`` is
  False; a ``visibility`` event carries the new state in ``visible``), when the earlier event
  is ``submit`` (the image's clock stopped) or when the later event is ``image_open`` /
  ``session_start`` (the clock restarts). Events without an ``image_id`` are not timed.
- Image time: the sum of its counted gaps.
- A reviewed pre-fill's time: the counted gap ending at its ``mask_accept`` / ``mask_reject``
  (an ``accept_all_confident`` gap is split equally over its ``payload["mask_ids"]``).
- An added or fixed mask's time runs from its first prompt (``prompt_click``, ``prompt_box``,
  ``brush`` or ``fix_start``) to its ``object_commit``: the counted gaps ending after the first
  prompt, up to and including the commit. ``object_commit``, ``object_cancel``, ``submit``,
  ``image_open`` and ``session_start`` close an object. Clicks per mask = ``prompt_click`` plus
  ``prompt_box`` events of the object (a box counts as one prompt).

Raw events are never changed; call ``derive_effort`` with another ``idle_s`` to recompute.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Event
from engine.flywheel import events as ek

DEFAULT_IDLE_S = 30.0
CLOCK_RESTARTS = (ek.IMAGE_OPEN, ek.SESSION_START)
OBJECT_STARTS = (ek.PROMPT_CLICK, ek.PROMPT_BOX, ek.BRUSH, ek.FIX_START)
OBJECT_ENDS = (ek.OBJECT_COMMIT, ek.OBJECT_CANCEL, ek.SUBMIT, ek.IMAGE_OPEN, ek.SESSION_START)
CLICK_KINDS = (ek.PROMPT_CLICK, ek.PROMPT_BOX)


class EventLike(Protocol):
    """Anything with the event columns (``db.models.Event`` rows qualify); dicts work too."""

    session_id: str
    seq: int
    client_time: float
    visible: bool
    kind: str
    image_id: int | None
    mask_id: int | None
    payload: dict[str, Any]


@dataclass
class Gap:
    """One gap between consecutive events; ``counted_s`` is what enters the totals."""

    session_id: str
    image_id: int
    from_kind: str
    to_kind: str
    to_mask_id: int | None
    raw_s: float
    counted_s: float
    reason: str  # "counted" | "capped" | "hidden" | "after_submit" | "clock_restart"


@dataclass
class MaskEffort:
    """Seconds spent on one mask. ``kind``: "review" (a pre-fill decision) | "object" (added/fixed)."""

    mask_id: int
    kind: str
    seconds: float = 0.0
    clicks: int = 0
    parent_id: int | None = None
    decision: str | None = None  # review: mask_accept | mask_reject | accept_all_confident


@dataclass
class Effort:
    """The derivation: per-image and per-mask seconds plus every gap."""

    idle_s: float
    per_image: dict[int, float] = field(default_factory=dict)
    per_mask: dict[int, MaskEffort] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    cancelled_objects: int = 0

    @property
    def total_s(self) -> float:
        return float(sum(self.per_image.values()))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"idle_s", "total_s", "per_image": {id: s}, "per_mask": [...], "gaps": [...]}``."""
        return {
            "idle_s": self.idle_s,
            "total_s": self.total_s,
            "per_image": {str(k): v for k, v in self.per_image.items()},
            "per_mask": [vars(m).copy() for m in self.per_mask.values()],
            "cancelled_objects": self.cancelled_objects,
            "gaps": [vars(g).copy() for g in self.gaps],
            "rules": __doc__.split("Rules", 1)[1].split("Raw events", 1)[0].strip(),
        }


def _get(ev: Any, name: str, default: Any = None) -> Any:
    if isinstance(ev, Mapping):
        return ev.get(name, default)
    return getattr(ev, name, default)


def _gap(prev: Any, cur: Any, idle_s: float) -> tuple[float, float, str]:
    """(raw_s, counted_s, reason) for the gap ending at ``cur``."""
    raw = (float(_get(cur, "client_time")) - float(_get(prev, "client_time"))) / 1000.0
    if not _get(prev, "visible", True):
        return raw, 0.0, "hidden"
    if _get(prev, "kind") == ek.SUBMIT:
        return raw, 0.0, "after_submit"
    if _get(cur, "kind") in CLOCK_RESTARTS:
        return raw, 0.0, "clock_restart"
    raw_pos = max(raw, 0.0)
    if raw_pos > idle_s:
        return raw, idle_s, "capped"
    return raw, raw_pos, "counted"


def derive_effort(events: Sequence[EventLike], idle_s: float = DEFAULT_IDLE_S) -> Effort:
    """Apply the module's timing rules to ``events`` (any order, any images and sessions)."""
    if idle_s <= 0:
        raise ValueError(f"idle_s must be positive, got {idle_s}")
    out = Effort(idle_s=float(idle_s))
    streams: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for ev in events:
        image_id = _get(ev, "image_id")
        if image_id is None:
            continue
        streams[(int(image_id), str(_get(ev, "session_id")))].append(ev)
    for (image_id, session_id), evs in sorted(streams.items()):
        evs.sort(key=lambda e: (float(_get(e, "client_time")), int(_get(e, "seq", 0) or 0)))
        out.per_image.setdefault(image_id, 0.0)
        obj_open = False
        obj_s, obj_clicks = 0.0, 0
        for i, ev in enumerate(evs):
            kind = _get(ev, "kind")
            counted = 0.0
            if i > 0:
                raw, counted, reason = _gap(evs[i - 1], ev, idle_s)
                out.gaps.append(
                    Gap(
                        session_id,
                        image_id,
                        _get(evs[i - 1], "kind"),
                        kind,
                        _get(ev, "mask_id"),
                        raw,
                        counted,
                        reason,
                    )
                )
                out.per_image[image_id] += counted
            mask_id = _get(ev, "mask_id")
            payload = _get(ev, "payload") or {}
            if kind in ek.REVIEW_DECISIONS and mask_id is not None:
                me = out.per_mask.setdefault(mask_id, MaskEffort(mask_id, "review"))
                me.seconds += counted
                me.decision = kind
            elif kind == ek.ACCEPT_ALL_CONFIDENT:
                ids = [int(m) for m in payload.get("mask_ids", [])]
                for m in ids:
                    me = out.per_mask.setdefault(m, MaskEffort(m, "review"))
                    me.seconds += counted / len(ids)
                    me.decision = kind
            if obj_open:
                obj_s += counted
            if kind in CLICK_KINDS:
                obj_clicks += 1
            if kind in OBJECT_STARTS and not obj_open:
                obj_open, obj_s = True, 0.0
            if kind in OBJECT_ENDS:
                if kind == ek.OBJECT_COMMIT and mask_id is not None:
                    out.per_mask[mask_id] = MaskEffort(
                        mask_id,
                        "object",
                        obj_s if obj_open else 0.0,
                        obj_clicks,
                        payload.get("parent_id"),
                    )
                elif kind == ek.OBJECT_CANCEL:
                    out.cancelled_objects += 1
                obj_open, obj_s, obj_clicks = False, 0.0, 0
    return out


def image_effort(session: Session, *, image_id: int, idle_s: float = DEFAULT_IDLE_S) -> Effort:
    """Load every event of ``image_id`` and derive its effort (for ``GET /api/images/{id}/effort``)."""
    rows = session.scalars(
        select(Event)
        .where(Event.image_id == image_id)
        .order_by(Event.session_id, Event.client_time, Event.seq)
    ).all()
    return derive_effort(rows, idle_s=idle_s)
