"""Human effort from the event log: the ONE definition (``docs/effort.md``).

Pure: no database access. ``engine.flywheel.effort_loader`` reads the events (and the masks'
parent links) and calls ``derive_effort``; ``GET /api/images/{id}/effort``, the metrics
(``engine.flywheel.metrics``, through its cache), the CLI, the report and the simulator all
use it, so every surface counts the same seconds.

Rules
- Measured events are grouped into streams by ``(image_id, session_id)`` and ordered by
  ``(client_time, seq)``; ``client_time`` is milliseconds, monotonic within a session.
  Events without an ``image_id`` are not timed; ``import_lead_time`` events are never timed
  (their seconds are *imported* effort, reported beside measured effort, never added to it).
- Each consecutive pair gives a *gap* ``t_i - t_{i-1}`` (seconds), capped at ``idle_s``.
- A gap counts as zero when: the later event is ``image_open`` / ``session_start`` (the clock
  restarts); the image's clock is stopped (a ``submit`` came earlier in the stream and no
  ``image_open`` / ``session_start`` since, whatever events follow); or the page was hidden
  after the earlier event (its ``visible`` is False; a ``visibility`` event carries the new
  state in ``visible``).
- Image time: the sum of its counted gaps, under every lease of the annotate stage (work on a
  released or expired lease of an image is part of that image's time). Each gap also belongs
  to one lease: the later event's ``lease_id``, else the earlier one's (``per_lease``).
- A reviewed pre-fill's review time: the counted gaps ending at its ``mask_accept`` /
  ``mask_reject`` (an ``accept_all_confident`` gap is split equally over its
  ``payload["mask_ids"]``).
- An added or fixed object's own time runs from its first prompt (``prompt_click``,
  ``prompt_box``, ``brush`` or ``fix_start``) to its ``object_commit``: the counted gaps ending
  after the first prompt, up to and including the commit. ``object_commit``,
  ``object_cancel``, ``submit``, ``image_open`` and ``session_start`` close an object. Its
  clicks = ``prompt_click`` plus ``prompt_box`` events (a box counts as one prompt). A review
  decision on an object (e.g. withdrawing it) is review time, never the object's own time.
- A mask's cost: its own object time and clicks plus those of every ancestor along its
  ``parent`` links (the object that created it and every earlier fix), so refining an added
  object with F keeps its creation effort.

Raw events are never changed; call ``derive_effort`` with another ``idle_s`` to recompute.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.flywheel import events as ek

DEFAULT_IDLE_S = 30.0
CLOCK_RESTARTS = (ek.IMAGE_OPEN, ek.SESSION_START)
OBJECT_STARTS = (ek.PROMPT_CLICK, ek.PROMPT_BOX, ek.BRUSH, ek.FIX_START)
OBJECT_ENDS = (ek.OBJECT_COMMIT, ek.OBJECT_CANCEL, ek.SUBMIT, ek.IMAGE_OPEN, ek.SESSION_START)
CLICK_KINDS = (ek.PROMPT_CLICK, ek.PROMPT_BOX)
GAP_REASONS = ("counted", "capped", "hidden", "after_submit", "clock_restart")


class EventLike(Protocol):
    """Anything with the event columns (``db.models.Event`` rows qualify); dicts work too."""

    session_id: str
    seq: int
    client_time: float
    visible: bool
    kind: str
    image_id: int | None
    mask_id: int | None
    lease_id: int | None
    payload: dict[str, Any]


@dataclass
class Gap:
    """One gap between consecutive events; ``counted_s`` is what enters the totals."""

    session_id: str
    image_id: int
    lease_id: int | None
    from_kind: str
    to_kind: str
    to_mask_id: int | None
    raw_s: float
    counted_s: float
    reason: str  # one of GAP_REASONS


@dataclass
class MaskEffort:
    """Seconds spent on one mask.

    ``kind``: "review" (a pre-fill decision) | "object" (added or fixed). ``seconds`` /
    ``clicks``: the mask's own time (object: first prompt to commit; review: its decision
    gaps); ``review_s``: decision gaps on it; ``cost_s`` / ``cost_clicks``: own plus every
    ancestor's object time and clicks (objects only; equal to own for a first creation).
    """

    mask_id: int
    kind: str
    image_id: int | None = None
    seconds: float = 0.0
    clicks: int = 0
    parent_id: int | None = None
    decision: str | None = None  # review: mask_accept | mask_reject | accept_all_confident
    review_s: float = 0.0
    cost_s: float = 0.0
    cost_clicks: int = 0


@dataclass
class Effort:
    """The derivation: per-image, per-lease and per-mask seconds plus every gap."""

    idle_s: float
    per_image: dict[int, float] = field(default_factory=dict)
    per_lease: dict[tuple[int, int | None], float] = field(default_factory=dict)
    imported: dict[int, float] = field(default_factory=dict)
    per_mask: dict[int, MaskEffort] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    cancelled_objects: int = 0

    @property
    def total_s(self) -> float:
        return float(sum(self.per_image.values()))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"idle_s", "total_s", "per_image": {id: s}, "per_lease": [{image_id,
        lease_id, seconds}], "imported_s": {id: s}, "per_mask": [...], "gaps": [...], "rules"}``."""
        return {
            "idle_s": self.idle_s,
            "total_s": self.total_s,
            "per_image": {str(k): v for k, v in self.per_image.items()},
            "per_lease": [
                {"image_id": i, "lease_id": lease, "seconds": s}
                for (i, lease), s in sorted(self.per_lease.items(), key=lambda kv: str(kv[0]))
            ],
            "imported_s": {str(k): v for k, v in self.imported.items()},
            "per_mask": [vars(m).copy() for m in self.per_mask.values()],
            "cancelled_objects": self.cancelled_objects,
            "gaps": [vars(g).copy() for g in self.gaps],
            "rules": RULES,
        }


RULES = (__doc__ or "").split("Rules", 1)[1].split("Raw events", 1)[0].strip()


PAYLOAD_KINDS = (ek.ACCEPT_ALL_CONFIDENT, ek.OBJECT_COMMIT, ek.IMPORT_LEAD_TIME)  # payload read


@dataclass(slots=True)
class _Ev:
    """One event as the derivation reads it (normalised once)."""

    t: float
    seq: int
    visible: bool
    kind: str
    mask_id: int | None
    lease_id: int | None
    payload: Any


def _getter(ev: Any) -> Any:
    if isinstance(ev, dict):
        return ev.get
    mapping = getattr(ev, "_mapping", None)  # a SQLAlchemy Row
    if mapping is not None:
        return mapping.get
    if isinstance(ev, Mapping):
        return ev.get
    return lambda name, default=None: getattr(ev, name, default)


def _gap(prev: _Ev, cur: _Ev, idle_s: float, stopped: bool) -> tuple[float, float, str]:
    """(raw_s, counted_s, reason) for the gap ending at ``cur``."""
    raw = (cur.t - prev.t) / 1000.0
    if cur.kind in CLOCK_RESTARTS:
        return raw, 0.0, "clock_restart"
    if stopped:
        return raw, 0.0, "after_submit"
    if not prev.visible:
        return raw, 0.0, "hidden"
    raw_pos = max(raw, 0.0)
    if raw_pos > idle_s:
        return raw, idle_s, "capped"
    return raw, raw_pos, "counted"


def _payload(payload: Any) -> Mapping[str, Any]:
    """The event's payload as a mapping (a JSON text payload, as in the Parquet export, is
    decoded; anything else that is not an object reads as empty)."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return {}
    return payload if isinstance(payload, Mapping) else {}


def _seconds(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def derive_effort(
    events: Sequence[EventLike] | Sequence[Mapping[str, Any]],
    idle_s: float = DEFAULT_IDLE_S,
    *,
    parents: Mapping[int, int | None] | None = None,
    keep_gaps: bool = True,
) -> Effort:
    """Apply the module's rules to ``events`` (any order, any images, sessions and leases).

    ``keep_gaps`` False leaves ``Effort.gaps`` empty (the totals are the same; bulk callers
    such as the metrics cache skip building one record per gap).

    ``parents``: mask id -> parent mask id (the mask table's links, authoritative); where a
    mask is missing, the ``parent_id`` of its ``object_commit`` payload is used. Only
    ``PAYLOAD_KINDS`` events' payloads are read.
    """
    if not idle_s > 0:
        raise ValueError(f"idle_s must be positive, got {idle_s}")
    out = Effort(idle_s=float(idle_s))
    streams: dict[tuple[int, str], list[_Ev]] = defaultdict(list)
    for ev in events:
        get = _getter(ev)
        image_id = get("image_id")
        if image_id is None:
            continue
        kind = get("kind")
        if kind == ek.IMPORT_LEAD_TIME:
            secs = _seconds(_payload(get("payload")).get("seconds"))
            out.imported[int(image_id)] = out.imported.get(int(image_id), 0.0) + (secs or 0.0)
            continue
        visible = get("visible", True)
        streams[(int(image_id), str(get("session_id")))].append(_Ev(
            float(get("client_time")), int(get("seq", 0) or 0),
            True if visible is None else bool(visible), kind, get("mask_id"), get("lease_id"),
            get("payload") if kind in PAYLOAD_KINDS else None,
        ))  # fmt: skip
    for (image_id, session_id), evs in sorted(streams.items()):
        evs.sort(key=lambda e: (e.t, e.seq))
        _derive_stream(out, image_id, session_id, evs, float(idle_s), keep_gaps)
    _add_costs(out, parents or {})
    return out


def _derive_stream(
    out: Effort, image_id: int, session_id: str, evs: list[_Ev], idle_s: float, keep_gaps: bool
) -> None:
    out.per_image.setdefault(image_id, 0.0)
    obj_open, stopped = False, False
    obj_s, obj_clicks = 0.0, 0
    prev: _Ev | None = None
    for ev in evs:
        kind, mask_id = ev.kind, ev.mask_id
        counted = 0.0
        if prev is not None:
            raw, counted, reason = _gap(prev, ev, idle_s, stopped)
            lease = prev.lease_id if ev.lease_id is None else ev.lease_id
            if keep_gaps:
                out.gaps.append(
                    Gap(session_id, image_id, lease, prev.kind, kind, mask_id, raw, counted, reason)
                )
            out.per_image[image_id] += counted
            key = (image_id, lease)
            out.per_lease[key] = out.per_lease.get(key, 0.0) + counted
        prev = ev
        if kind in ek.REVIEW_DECISIONS and mask_id is not None:
            me = out.per_mask.setdefault(mask_id, MaskEffort(mask_id, "review", image_id))
            me.review_s += counted
            me.decision = kind
            if me.kind == "review":
                me.seconds += counted
        elif kind == ek.ACCEPT_ALL_CONFIDENT:
            ids = [int(m) for m in _payload(ev.payload).get("mask_ids", [])]
            for m in ids:
                me = out.per_mask.setdefault(m, MaskEffort(m, "review", image_id))
                me.review_s += counted / len(ids)
                me.decision = kind
                if me.kind == "review":
                    me.seconds += counted / len(ids)
        if obj_open:
            obj_s += counted
        if kind in CLICK_KINDS:
            obj_clicks += 1
        if kind in OBJECT_STARTS and not obj_open:
            obj_open, obj_s = True, 0.0
        if kind in OBJECT_ENDS:
            if kind == ek.OBJECT_COMMIT and mask_id is not None:
                old = out.per_mask.get(mask_id)
                out.per_mask[mask_id] = MaskEffort(
                    mask_id, "object", image_id, obj_s if obj_open else 0.0, obj_clicks,
                    _payload(ev.payload).get("parent_id"),
                    review_s=old.review_s if old else 0.0,
                )  # fmt: skip
            elif kind == ek.OBJECT_CANCEL:
                out.cancelled_objects += 1
            obj_open, obj_s, obj_clicks = False, 0.0, 0
        if kind == ek.SUBMIT:
            stopped = True
        elif kind in CLOCK_RESTARTS:
            stopped = False


def _add_costs(out: Effort, parents: Mapping[int, int | None]) -> None:
    """cost = own object time (and clicks) + every ancestor's, following parent links."""
    for me in out.per_mask.values():
        if me.kind != "object":
            continue
        cost_s, cost_clicks, seen = 0.0, 0, set()
        node: int | None = me.mask_id
        while node is not None and node not in seen:
            seen.add(node)
            anc = out.per_mask.get(node)
            if anc is not None and anc.kind == "object":
                cost_s += anc.seconds
                cost_clicks += anc.clicks
            node = parents.get(node, anc.parent_id if anc else None)
        me.cost_s, me.cost_clicks = cost_s, cost_clicks
