"""Effort cache data functions: the derived per-image sums behind the flywheel metrics.

``effort_cache`` holds one row per worked image (its active seconds and per-image mask sums,
``CACHED_COLS``) and ``effort_object`` the per-object costs; both are derived from the event
log and the masks by ``engine.flywheel.metrics_project``, which decides what to derive. This
module finds the stale rows (``stale_images``), replaces a chunk of rows with the sums computed
in SQL (``replace_effort_rows``), advances the rows' watermarks (``mark_checked``) and reads
the rows back (``effort_rows``). ``done`` arguments are ``db.worked_images.worked_images``
subqueries (columns image_id, lease_id, round, arm).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import EffortCache, EffortObject, Event, Mask, utcnow
from db.worked_images import shown_to_annotator

log = logging.getLogger("dataengine.metrics")
WATERMARK_MARGIN = 10_000  # event ids re-checked on PostgreSQL (ids may commit out of order)
SETTLE = dt.timedelta(seconds=60)  # an event this much older than a derivation was committed
MASK_COLS = ("final", "from_proposal", "added", "shown", "accepted_as_is", "fixed")
ADDED_COLS = ("added_seconds", "added_clicks", "added_timed")
CACHED_COLS = (*MASK_COLS, "fixed_iou_sum", "seconds", *ADDED_COLS, "imported_s")
# final ``model_edited`` mask rows (id, image_id, parent_id, rle) -> mask id -> (image id, IoU)
RootIous = Callable[[Sequence[Any]], dict[int, tuple[int, float]]]


@dataclass
class StaleScan:
    """What ``stale_images`` found: ``todo`` image ids to re-derive (sorted), their done
    ``leases`` (image id -> lease id), the newest event id ``top``, the scan time ``now``
    and the lowest watermark / oldest mask check of the rows (None: no rows yet)."""

    todo: list[int]
    leases: dict[int, int]
    top: int
    now: dt.datetime
    low: int | None
    oldest_check: dt.datetime | None
    margin: int


def stale_images(session: Session, *, done: Any, idle_s: float) -> StaleScan:
    """Done images whose ``effort_cache`` row is missing or stale: another lease or idle cap,
    events newer than their watermark, or masks edited since their derivation.

    Events are append-only, so only images with new events are re-derived. On PostgreSQL an
    id can commit after a larger one; the last ``WATERMARK_MARGIN`` ids are always re-checked.
    Mask edits are found through ``mask.updated_at`` (indexed) since the oldest
    ``masks_checked_at``; a change within ``SETTLE`` of a derivation re-derives the image.
    Only candidate rows are read into Python, so a fresh cache costs a few indexed queries.
    """
    margin = 0 if session.get_bind().dialect.name == "sqlite" else WATERMARK_MARGIN
    now = utcnow()
    top = int(session.scalar(select(func.max(Event.id))) or 0)
    ec = EffortCache
    stale = set(
        session.scalars(
            select(done.c.image_id)
            .outerjoin(ec, ec.image_id == done.c.image_id)
            .where(or_(ec.image_id.is_(None), ec.lease_id.is_distinct_from(done.c.lease_id),
                       ec.idle_s != idle_s, ec.masks_checked_at.is_(None),
                       ec.imported_s.is_(None)))
        )
    )  # fmt: skip
    low_wm, oldest_check = session.execute(
        select(func.min(ec.watermark), func.min(ec.masks_checked_at)).join(
            done, done.c.image_id == ec.image_id
        )
    ).one()
    events: dict[int, tuple[int, dt.datetime]] = {}
    edits: dict[int, dt.datetime] = {}
    low = None
    if low_wm is not None:
        low = int(low_wm) - margin
        # rows, not GROUP BY: SQLite would scan a whole (image_id, ...) index to group
        recent = select(Event.image_id, Event.id, Event.server_time).where(
            Event.id > low, Event.image_id.is_not(None)
        )
        for i, n, t in session.execute(recent):
            old = events.get(i)
            events[i] = (n, t) if old is None else (max(old[0], n), max(old[1], t))
    if oldest_check is not None:
        edited = select(Mask.image_id, Mask.updated_at).where(
            Mask.updated_at > oldest_check - SETTLE
        )
        for i, t in session.execute(edited):
            edits[i] = max(edits.get(i, t), t)
    candidates = sorted((set(events) | set(edits)) - stale)
    for k in range(0, len(candidates), 5000):
        rows = session.execute(
            select(ec.image_id, ec.watermark, ec.computed_at)
            .join(done, done.c.image_id == ec.image_id)
            .where(ec.image_id.in_(candidates[k : k + 5000]))
        )
        for r in rows:
            if r.image_id in events:
                newest, newest_time = events[r.image_id]
                # new events, or (PostgreSQL) events that may have committed after the derivation
                in_flight = newest > r.watermark - margin and r.computed_at < newest_time + SETTLE
                if newest > r.watermark or in_flight:
                    stale.add(r.image_id)
            if r.image_id in edits and r.computed_at < edits[r.image_id] + SETTLE:
                stale.add(r.image_id)
    todo = sorted(stale)
    leases = dict(
        session.execute(select(done.c.image_id, done.c.lease_id).where(done.c.image_id.in_(todo)))
        .all()
    ) if todo else {}  # fmt: skip
    return StaleScan(todo, leases, top, now, low, oldest_check, margin)


def mark_checked(session: Session, *, done: Any, scan: StaleScan) -> None:
    """Advance the watermark (to ``scan.top``) and ``masks_checked_at`` (to ``scan.now``) of
    the ``done`` images' rows once ``scan`` has looked far enough past them."""
    ec = EffortCache
    if scan.low is not None and scan.top - scan.low > 2 * scan.margin + 1:
        session.execute(  # every row was checked up to ``top``
            update(ec)
            .where(ec.image_id.in_(select(done.c.image_id)), ec.watermark < scan.top)
            .values(watermark=scan.top)
        )
    if scan.oldest_check is not None and scan.oldest_check < scan.now - 5 * SETTLE:
        session.execute(  # edits checked to ``now``
            update(ec)
            .where(ec.image_id.in_(select(done.c.image_id)), ec.masks_checked_at < scan.now)
            .values(masks_checked_at=scan.now)
        )


def final_fixes(session: Session, *, mask_ids: Sequence[int]) -> list[Row[Any]]:
    """(id, image_id, parent_id, rle) of the ``model_edited`` masks among ``mask_ids``."""
    if not mask_ids:
        return []
    return list(
        session.execute(
            select(Mask.id, Mask.image_id, Mask.parent_id, Mask.rle).where(
                Mask.id.in_(mask_ids), Mask.source == "model_edited"
            )
        ).all()
    )


def superseded_lineage(
    session: Session, *, image_ids: Collection[int]
) -> dict[int, tuple[int | None, str, dict[str, Any]]]:
    """mask id -> (parent id, source, rle) of the superseded masks of ``image_ids``: the
    chain a final mask was edited from."""
    return {
        r.id: (r.parent_id, r.source, r.rle)
        for r in session.execute(
            select(Mask.id, Mask.parent_id, Mask.source, Mask.rle).where(
                Mask.image_id.in_(image_ids), Mask.status == "superseded"
            )
        )
    }


def replace_effort_rows(
    session: Session,
    *,
    done: Any,
    ids: Sequence[int],
    objects: list[dict[str, Any]],
    base: dict[int, dict[str, Any]],
    root_ious: RootIous,
) -> bool:
    """Replace the ``effort_object`` and ``effort_cache`` rows of ``ids`` in one savepoint.

    ``objects``: ``effort_object`` rows (image_id, mask_id, seconds, clicks, iou). ``base``:
    image id -> the cache row's derived fields (lease_id, idle_s, watermark, seconds,
    computed_at, masks_checked_at, imported_s); the mask sums (``MASK_COLS``, ``ADDED_COLS``,
    ``fixed_iou_sum``) are added here in SQL. ``root_ious`` computes the IoU of final fixes
    whose objects carry none. Returns False (keeping the other rows) when another process
    refreshed the same images concurrently.
    """
    try:
        with session.begin_nested():
            session.execute(delete(EffortObject).where(EffortObject.image_id.in_(ids)))
            session.execute(delete(EffortCache).where(EffortCache.image_id.in_(ids)))
            if objects:
                session.execute(insert(EffortObject), objects)
            masks = _mask_sums(session, done, ids)
            added = _added_sums(session, ids)
            fixed = _fixed_ious(session, ids, root_ious)
            rows = []
            for i in ids:
                row = dict(zip(MASK_COLS, masks.get(i, (0,) * len(MASK_COLS)), strict=True))
                row.update(zip(ADDED_COLS, added.get(i, (0.0, 0, 0)), strict=True))
                row.update(image_id=i, fixed_iou_sum=fixed.get(i, 0.0), **base[i])
                rows.append(row)
            session.execute(insert(EffortCache), rows)
    except IntegrityError:  # another process refreshed the same images just now
        log.info("effort cache: concurrent refresh of %d images; keeping theirs", len(ids))
        return False
    return True


def effort_rows(session: Session, *, done: Any) -> list[Row[Any]]:
    """(image_id, round, arm, lease_id, *CACHED_COLS) of every ``done`` image, by image id;
    the cached columns are NULL for an image without a cache row."""
    cache_cols = [getattr(EffortCache, c) for c in CACHED_COLS]
    return list(
        session.execute(
            select(done.c.image_id, done.c.round, done.c.arm, done.c.lease_id, *cache_cols)
            .outerjoin(EffortCache, EffortCache.image_id == done.c.image_id)
            .order_by(done.c.image_id)
        ).all()
    )


def _mask_sums(session: Session, done: Any, ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """image_id -> (final, from_proposal, added, shown, accepted_as_is, fixed) of ``ids``.

    ``from_proposal`` counts accepted ``model_edited`` masks and accepted proposals that were
    shown (``shown_to_annotator``)."""
    accepted = Mask.status == "accepted"
    shown = shown_to_annotator(done=done)
    q = (
        select(
            Mask.image_id,
            func.sum(case((accepted, 1), else_=0)),
            func.sum(case((and_(accepted, or_(Mask.source == "model_edited", shown)), 1), else_=0)),
            func.sum(case((and_(accepted, Mask.source == "human"), 1), else_=0)),
            func.sum(case((shown, 1), else_=0)),
            func.sum(case((and_(shown, accepted), 1), else_=0)),
            func.sum(case((and_(accepted, Mask.source == "model_edited"), 1), else_=0)),
        )
        .join(done, done.c.image_id == Mask.image_id)
        .where(Mask.image_id.in_(ids))
        .group_by(Mask.image_id)
    )
    return {int(r[0]): tuple(int(v or 0) for v in r[1:]) for r in session.execute(q)}


def _added_sums(session: Session, ids: Sequence[int]) -> dict[int, tuple[float, int, int]]:
    """image_id -> (added_seconds, added_clicks, added_timed) of final ``human`` masks of ``ids``
    with a derived object."""
    q = (
        select(EffortObject.image_id, func.sum(EffortObject.seconds),
               func.sum(EffortObject.clicks), func.count())
        .join(Mask, Mask.id == EffortObject.mask_id)
        .where(Mask.status == "accepted", Mask.source == "human",
               EffortObject.image_id.in_(ids))
        .group_by(EffortObject.image_id)
    )  # fmt: skip
    return {
        int(image_id): (float(sec or 0), int(clicks or 0), int(n))
        for image_id, sec, clicks, n in session.execute(q)
    }


def _fixed_ious(session: Session, ids: Sequence[int], root_ious: RootIous) -> dict[int, float]:
    """image_id -> sum of IoU(final model_edited mask, the model proposal it began as), ``ids``.

    IoUs cached on ``effort_object.iou`` (set when the fix's commit event was derived) are
    summed in SQL; final fixes without one go through ``root_ious``.
    """
    final_fix = and_(Mask.status == "accepted", Mask.source == "model_edited")
    out: dict[int, float] = defaultdict(float)
    cached = (
        select(EffortObject.image_id, func.sum(EffortObject.iou))
        .join(Mask, Mask.id == EffortObject.mask_id)
        .where(final_fix, EffortObject.iou.is_not(None), EffortObject.image_id.in_(ids))
        .group_by(EffortObject.image_id)
    )
    for image_id, total in session.execute(cached):
        out[int(image_id)] += float(total or 0.0)
    has_iou = select(EffortObject.id).where(
        EffortObject.mask_id == Mask.id, EffortObject.iou.is_not(None)
    )
    missing = session.execute(
        select(Mask.id, Mask.image_id, Mask.parent_id, Mask.rle).where(
            final_fix, ~has_iou.exists(), Mask.image_id.in_(ids)
        )
    ).all()
    for image_id, iou in root_ious(missing).values():
        out[image_id] += iou
    return out
