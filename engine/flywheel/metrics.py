"""Flywheel metrics per round and arm, with seeded cluster-bootstrap 95 % intervals.

The unit is an *image done*: an image with a finished ``annotate`` lease (``completed_at``
set); its round and arm are that lease's (``round`` None: no round was open, the "no round"
row, with a note in ``notes`` on how to start rounds). Images worked but never finished
(released, expired or open leases) add their seconds to ``released_s`` of their newest
lease's round and arm; Label Studio ``lead_time`` adds to ``imported_s``; neither enters a
figure. Every figure is a ratio of per-image sums over images done, so one bootstrap
(images resampled with replacement within a round x arm group) gives every interval:

================================  =====================================================
figure                            numerator / denominator (summed over images)
================================  =====================================================
final_masks_per_image             accepted masks / images
prefill_precision                 shown ``model`` proposals still ``accepted`` (as is) /
                                  proposals shown (prefill arm only; shown = confident,
                                  or revealed: ``shown_to_annotator``)
prefill_contribution              accepted shown proposals + accepted model_edited
                                  masks / accepted masks
seconds_per_image                 active seconds / images
seconds_per_final_mask            active seconds / accepted masks
seconds_per_added_mask            cost (creation + every fix, ``effort.py``) of timed
                                  ``human`` accepted masks / their number
clicks_per_added_mask             their cost in clicks / their number
fixed_iou                         sum of IoU(final ``model_edited`` mask, the proposal it
                                  began as) / number of such masks
masks_per_annotator_hour          accepted masks / (active seconds / 3600)
================================  =====================================================

Active seconds and every per-object cost come from ``engine.flywheel.effort.derive_effort``
(the one definition, ``docs/effort.md``) run per image on the rows of
``engine.flywheel.effort_loader``, the same rows ``GET /api/images/{id}/effort`` derives, so
both agree on every image and any ``idle_s`` recomputes from the raw event log.

Every per-image sum above is kept on ``effort_cache`` (one row per worked image) beside the
per-object ``effort_object`` rows: derived tables, re-derived here only for images with new
events (event id watermark) or edited masks (``mask.updated_at`` since the row's derivation,
indexed), so a query on a fresh cache reads one row per image plus a few indexed look-ups
(10,000 images / 500,000 masks: well under 1 s, see ``scripts/bench_metrics.py``). The first
query on a never-queried project derives every image (about 10 ms an image on SQLite
here: the events are read and ``derive_effort`` runs in Python);
``refresh_project_cache`` does that ahead, and a task submit derives its own image
(``refresh_image_cache``), so in live use that cost is spread over submits. Callers that
want the refresh kept commit the session (the CLI and the API do).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from sqlalchemy import (
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import (
    EffortCache,
    EffortObject,
    Event,
    Image,
    Lease,
    Mask,
    Project,
    Round,
    utcnow,
)
from engine.flywheel import events as ek
from engine.flywheel.effort import DEFAULT_IDLE_S
from engine.flywheel.effort_loader import load_effort

log = logging.getLogger("dataengine.metrics")
ARMS = ("prefill", "control")
WATERMARK_MARGIN = 10_000  # event ids re-checked on PostgreSQL (ids may commit out of order)
SETTLE = dt.timedelta(seconds=60)  # an event this much older than a derivation was committed
# name -> (numerator column, denominator column, scale)
FIGURES: dict[str, tuple[str, str, float]] = {
    "final_masks_per_image": ("final", "one", 1.0),
    "prefill_precision": ("accepted_as_is", "shown", 1.0),
    "prefill_contribution": ("from_proposal", "final", 1.0),
    "seconds_per_image": ("seconds", "one", 1.0),
    "seconds_per_final_mask": ("seconds", "final", 1.0),
    "seconds_per_added_mask": ("added_seconds", "added_timed", 1.0),
    "clicks_per_added_mask": ("added_clicks", "added_timed", 1.0),
    "fixed_iou": ("fixed_iou_sum", "fixed", 1.0),
    "masks_per_annotator_hour": ("final", "seconds", 3600.0),
}
MASK_COLS = ("final", "from_proposal", "added", "shown", "accepted_as_is", "fixed")
ADDED_COLS = ("added_seconds", "added_clicks", "added_timed")
CACHED_COLS = (*MASK_COLS, "fixed_iou_sum", "seconds", *ADDED_COLS, "imported_s")  # effort_cache
COLUMNS = ("one", *CACHED_COLS, "released_s")
NO_ROUND = 0  # ``Table.rounds`` value of work done while no round was open (rounds start at 1)
NO_ROUND_NOTE = (
    "{n} image(s) were worked while no round was open (the 'no round' row); rounds bind work "
    "to a model version and a control arm: start one with `dataengine round start --project "
    "{project} --control-fraction 0.2` (the first `dataengine prefill` / `dataengine up` opens "
    "round 1 itself)."
)


@dataclass
class Table:
    """Per-image sums: ``image_ids`` (n,) int64, ``rounds`` (n,), ``arms`` (n,) str, ``cols`` name -> (n,) float64."""

    image_ids: np.ndarray
    rounds: np.ndarray
    arms: np.ndarray
    cols: dict[str, np.ndarray]


def done_leases(project_id: int | None, image_id: int | None = None) -> Any:
    """Select (lease_id, image_id, arm, round) of finished ``annotate`` leases in rounds,
    of one project and/or one image: the images the metrics (and calibration) count."""
    q = (
        select(
            Lease.id.label("lease_id"),
            Lease.image_id,
            Lease.arm,
            Round.number.label("round"),
        )
        .join(Round, Round.id == Lease.round_id)
        .where(Lease.stage == "annotate", Lease.completed_at.is_not(None))
    )
    if project_id is not None:
        q = q.where(Round.project_id == project_id)
    if image_id is not None:
        q = q.where(Lease.image_id == image_id)
    return q


def worked_images(project_id: int | None, image_id: int | None = None) -> Any:
    """Select (image_id, lease_id, round, arm) of every image with annotation work (an
    ``annotate`` lease or any event) of one project and/or one image: the metrics' units.

    ``lease_id``: the newest finished ``annotate`` lease (NULL: not finished; its seconds are
    ``released_s``). ``round`` / ``arm``: that lease's, else the newest ``annotate`` lease's;
    ``round`` NULL = work done while no round was open ("no round" row).
    """
    leases = (
        select(
            Lease.image_id,
            func.max(case((Lease.completed_at.is_not(None), Lease.id))).label("done_id"),
            func.max(Lease.id).label("any_id"),
        )
        .join(Image, Image.id == Lease.image_id)
        .where(Lease.stage == "annotate")
        .group_by(Lease.image_id)
    )
    scope = []
    if project_id is not None:
        scope.append(Image.project_id == project_id)
    if image_id is not None:
        scope.append(Image.id == image_id)
    leases = leases.where(*scope).subquery("annotate_leases")
    has_event = exists().where(Event.image_id == Image.id)
    units = (
        select(
            Image.id.label("image_id"),
            leases.c.done_id.label("lease_id"),
            func.coalesce(leases.c.done_id, leases.c.any_id).label("group_lease"),
        )
        .outerjoin(leases, leases.c.image_id == Image.id)
        .where(*scope, or_(leases.c.image_id.is_not(None), has_event))
    )
    u = units.subquery("units")
    return (
        select(u.c.image_id, u.c.lease_id, Round.number.label("round"),
               func.coalesce(Lease.arm, "prefill").label("arm"))
        .outerjoin(Lease, Lease.id == u.c.group_lease)
        .outerjoin(Round, Round.id == Lease.round_id)
    )  # fmt: skip


def shown_to_annotator(done: Any) -> Any:
    """SQL condition on ``Mask`` (joined with the ``done`` leases): a ``model`` proposal the
    annotator was shown. Confident proposals are pre-filled; the less confident ones count only
    on images where the annotator revealed them (a ``reveal_less_confident`` event under the
    image's done lease, or without a lease). The control arm shows nothing: its figures are
    zeroed in ``per_image_table``."""
    revealed = (
        select(Event.id)
        .where(
            Event.image_id == Mask.image_id,
            Event.kind == ek.REVEAL_LESS_CONFIDENT,
            or_(Event.lease_id.is_(None), Event.lease_id == done.c.lease_id),
        )
        .exists()
    )
    return and_(Mask.source == "model", or_(Mask.confident == true(), revealed))


def _mask_sums(session: Session, done: Any, ids: list[int]) -> dict[int, tuple[int, ...]]:
    """image_id -> (final, from_proposal, added, shown, accepted_as_is, fixed) of ``ids``.

    ``from_proposal`` counts accepted ``model_edited`` masks and accepted proposals that were
    shown (``shown_to_annotator``)."""
    accepted = Mask.status == "accepted"
    shown = shown_to_annotator(done)
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


def refresh_effort_cache(session: Session, done: Any, idle_s: float, chunk: int = 500) -> int:
    """Recompute the ``effort_cache`` / ``effort_object`` rows of done images that are missing
    or stale (other lease or idle cap, events newer than their watermark, or masks edited
    since their derivation); returns how many.

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
    for k in range(0, len(todo), chunk):
        _derive_chunk(session, done, idle_s, todo[k : k + chunk], leases, top, now)
    if low_wm is not None and top - low > 2 * margin + 1:  # every row was checked up to ``top``
        session.execute(
            update(ec)
            .where(ec.image_id.in_(select(done.c.image_id)), ec.watermark < top)
            .values(watermark=top)
        )
    if oldest_check is not None and oldest_check < now - 5 * SETTLE:  # edits checked to ``now``
        session.execute(
            update(ec)
            .where(ec.image_id.in_(select(done.c.image_id)), ec.masks_checked_at < now)
            .values(masks_checked_at=now)
        )
    return len(todo)


def refresh_project_cache(
    session: Session, *, project_id: int, idle_s: float = DEFAULT_IDLE_S
) -> int:
    """Bring the project's ``effort_cache`` rows up to date; returns how many were re-derived.

    ``project_metrics`` does this itself; call it ahead (after a bulk import, or from a job)
    so the next query finds a fresh cache. The caller commits.
    """
    return refresh_effort_cache(session, worked_images(project_id).subquery("done"), idle_s)


def refresh_image_cache(session: Session, *, image_id: int, idle_s: float = DEFAULT_IDLE_S) -> int:
    """Derive one done image's cache rows (the task submit calls this, so metric queries in
    live use find every row fresh and never pay the derivation). The caller commits."""
    return refresh_effort_cache(session, worked_images(None, image_id).subquery("done"), idle_s)


def _derive_chunk(
    session: Session, done: Any, idle_s: float, ids: list[int], leases: dict[int, int],
    top: int, now: dt.datetime,
) -> None:  # fmt: skip
    """Re-derive ``ids``: their objects from the event log, then every per-image sum."""
    effort = load_effort(session, image_ids=ids, idle_s=idle_s, keep_gaps=False)  # the one rule set
    seconds = {i: effort.per_image.get(i, 0.0) for i in ids}
    objects = [
        {"image_id": me.image_id, "mask_id": me.mask_id, "seconds": me.cost_s,
         "clicks": me.cost_clicks}
        for me in effort.per_mask.values() if me.kind == "object" and me.image_id in seconds
    ]  # fmt: skip
    commits = [o["mask_id"] for o in objects]
    edited = session.execute(
        select(Mask.id, Mask.image_id, Mask.parent_id, Mask.rle).where(
            Mask.id.in_(commits), Mask.source == "model_edited"
        )
    ).all() if commits else []  # fmt: skip
    ious = _root_ious(session, edited)
    for o in objects:
        o["iou"] = ious[o["mask_id"]][1] if o["mask_id"] in ious else None
    try:
        with session.begin_nested():
            session.execute(delete(EffortObject).where(EffortObject.image_id.in_(ids)))
            session.execute(delete(EffortCache).where(EffortCache.image_id.in_(ids)))
            if objects:
                session.execute(insert(EffortObject), objects)
            masks = _mask_sums(session, done, ids)
            added = _added_sums(session, ids)
            fixed = _fixed_ious(session, ids)
            rows = []
            for i in ids:
                row = dict(zip(MASK_COLS, masks.get(i, (0,) * len(MASK_COLS)), strict=True))
                row.update(zip(ADDED_COLS, added.get(i, (0.0, 0, 0)), strict=True))
                row.update(image_id=i, lease_id=leases[i], idle_s=idle_s, watermark=top,
                           seconds=seconds[i], computed_at=now, masks_checked_at=now,
                           fixed_iou_sum=fixed.get(i, 0.0),
                           imported_s=effort.imported.get(i, 0.0))  # fmt: skip
                rows.append(row)
            session.execute(insert(EffortCache), rows)
    except IntegrityError:  # another process refreshed the same images just now
        log.info("effort cache: concurrent refresh of %d images; keeping theirs", len(ids))


def _added_sums(session: Session, ids: list[int]) -> dict[int, tuple[float, int, int]]:
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


def _root_ious(session: Session, finals: list[Any]) -> dict[int, tuple[int, float]]:
    """mask id -> (image id, IoU with the ``model`` proposal it began as) for final
    ``model_edited`` rows ``(id, image_id, parent_id, rle)``; rows without one are left out."""
    if not finals:
        return {}
    image_ids = {r.image_id for r in finals}
    lineage = {
        r.id: (r.parent_id, r.source, r.rle)
        for r in session.execute(
            select(Mask.id, Mask.parent_id, Mask.source, Mask.rle).where(
                Mask.image_id.in_(image_ids), Mask.status == "superseded"
            )
        )
    }
    out: dict[int, tuple[int, float]] = {}
    for row in finals:
        parent, hops = row.parent_id, 0
        while parent in lineage and lineage[parent][1] != "model" and hops < 100:
            parent, hops = lineage[parent][0], hops + 1
        if parent not in lineage or lineage[parent][1] != "model":
            continue
        a, b = _coco(row.rle), _coco(lineage[parent][2])
        out[row.id] = (row.image_id, float(mask_utils.iou([a], [b], [0])[0][0]))
    return out


def _fixed_ious(session: Session, ids: list[int]) -> dict[int, float]:
    """image_id -> sum of IoU(final model_edited mask, the model proposal it began as), ``ids``.

    IoUs cached on ``effort_object.iou`` (set when the fix's commit event was derived) are
    summed in SQL; final fixes without one are computed here.
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
    for image_id, iou in _root_ious(session, missing).values():
        out[image_id] += iou
    return out


def _coco(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


def per_image_table(session: Session, *, project_id: int, idle_s: float = DEFAULT_IDLE_S) -> Table:
    """Per-image sums for every image with annotation work in the project (see the module
    table), read from ``effort_cache`` after refreshing its stale rows.

    Finished images (``one`` = 1) carry every figure; an unfinished image (released, expired
    or open lease) carries only ``released_s`` (its measured seconds) and ``imported_s``.
    ``rounds`` is ``NO_ROUND`` (0) for work done while no round was open.
    """
    done = worked_images(project_id).subquery("done")
    refresh_effort_cache(session, done, idle_s)
    cache_cols = [getattr(EffortCache, c) for c in CACHED_COLS]
    rows = session.execute(
        select(done.c.image_id, done.c.round, done.c.arm, done.c.lease_id, *cache_cols)
        .outerjoin(EffortCache, EffortCache.image_id == done.c.image_id)
        .order_by(done.c.image_id)
    ).all()
    n = len(rows)
    image_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    rounds = np.fromiter((r[1] or NO_ROUND for r in rows), dtype=np.int64, count=n)
    arms = np.asarray([r[2] for r in rows], dtype=object)
    finished = np.fromiter((r[3] is not None for r in rows), dtype=bool, count=n)
    values = np.asarray([r[4:] for r in rows], dtype=np.float64).reshape(n, len(CACHED_COLS))
    values = np.nan_to_num(values, nan=0.0)  # a row lost to a concurrent refresh: zeros
    cols = {c: np.zeros(n, dtype=np.float64) for c in COLUMNS}
    for j, c in enumerate(CACHED_COLS):
        cols[c] = np.ascontiguousarray(values[:, j])
    cols["one"][finished] = 1.0
    cols["released_s"][~finished] = cols["seconds"][~finished]
    for c in COLUMNS:
        if c not in ("one", "released_s", "imported_s"):
            cols[c][~finished] = 0.0
    control = arms == "control"  # nothing is shown on control images, whatever exists
    cols["shown"][control] = 0.0
    cols["accepted_as_is"][control] = 0.0
    return Table(image_ids, rounds, arms, cols)


def bootstrap_counts(n: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, n) float64: how often each of n units is drawn in each resample."""
    if n == 0:
        return np.zeros((reps, 0))
    # int32 draws are the same stream as int64 ones for n < 2**32 (both take the 32-bit path)
    idx = rng.integers(0, n, size=(reps, n), dtype=np.int32 if n < 2**31 else np.int64)
    out = np.empty((reps, n), dtype=np.float64)
    step = max(1, min(reps, 2**20 // n))  # blocks of rows that stay in cache
    for r in range(0, reps, step):
        block = idx[r : r + step].astype(np.int64)
        block += np.arange(0, block.shape[0] * n, n, dtype=np.int64)[:, None]
        out[r : r + step] = np.bincount(block.ravel(), minlength=block.size).reshape(-1, n)
    return out


def summarise(
    table: Table, *, reps: int = 1000, seed: int = 0, level: float = 0.95
) -> list[dict[str, Any]]:
    """One dict per (round, arm) with every figure as ``{"value", "lo", "hi", "num", "den"}``.

    ``round`` is None for work done while no round was open. Figures are over finished
    images (``images_done``); ``released_s`` (seconds on images no lease finished) and
    ``imported_s`` (Label Studio ``lead_time``) stand beside them, never mixed in. ``value`` is
    None where the denominator is 0. Intervals are percentile intervals of a cluster
    bootstrap over finished images with ``np.random.default_rng([seed, round, arm])``.
    """
    out = []
    names = list(FIGURES)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    done = table.cols["one"] > 0
    for rnd in sorted(set(table.rounds.tolist())):
        for a, arm in enumerate(ARMS):
            group = (table.rounds == rnd) & (table.arms == arm)
            if not group.any():
                continue
            sel = group & done
            n = int(sel.sum())
            num = np.stack([table.cols[FIGURES[f][0]][sel] for f in names], axis=1)
            den = np.stack([table.cols[FIGURES[f][1]][sel] for f in names], axis=1)
            scale = np.asarray([FIGURES[f][2] for f in names])
            counts = bootstrap_counts(n, reps, np.random.default_rng([seed, rnd, a]))
            with np.errstate(divide="ignore", invalid="ignore"):
                boot = (counts @ num) / (counts @ den) * scale
            figures: dict[str, Any] = {}
            for j, name in enumerate(names):
                tn, td = float(num[:, j].sum()), float(den[:, j].sum())
                value = tn / td * scale[j] if td > 0 else None
                finite = boot[:, j][np.isfinite(boot[:, j])]
                lo, hi = (
                    np.percentile(finite, q).tolist()
                    if finite.size and value is not None
                    else (None, None)
                )
                figures[name] = {"value": value, "lo": lo, "hi": hi, "num": tn, "den": td}
            unfinished = group & ~done
            out.append({
                "round": None if rnd == NO_ROUND else int(rnd), "arm": arm, "images_done": n,
                "final_masks": int(table.cols["final"][sel].sum()),
                "shown": int(table.cols["shown"][sel].sum()),
                "added_masks": int(table.cols["added"][sel].sum()),
                "active_seconds": float(table.cols["seconds"][sel].sum()),
                "images_unfinished": int((unfinished & (table.cols["released_s"] > 0)).sum()),
                "released_s": float(table.cols["released_s"][group].sum()),
                "imported_s": float(table.cols["imported_s"][group].sum()),
                "figures": figures,
            })  # fmt: skip
    return out


def project_metrics(
    session: Session,
    *,
    project_id: int,
    idle_s: float = DEFAULT_IDLE_S,
    reps: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything the CLI, the API and the report show: rounds (with model versions), groups
    (one per round x arm, ``round`` None = no round open) and ``notes`` (why a row is there or
    missing, and what to do)."""
    rounds = session.execute(
        select(Round.number, Round.id, Round.model_version_id, Round.control_fraction, Round.seed,
               Round.started_at, Round.ended_at)
        .where(Round.project_id == project_id).order_by(Round.number)
    ).all()  # fmt: skip
    table = per_image_table(session, project_id=project_id, idle_s=idle_s)
    groups = summarise(table, reps=reps, seed=seed)
    notes = []
    measured = (table.cols["one"] > 0) | (table.cols["released_s"] > 0)
    no_round = int(((table.rounds == NO_ROUND) & measured).sum())
    if no_round:
        name = session.scalar(select(Project.name).where(Project.id == project_id))
        notes.append(NO_ROUND_NOTE.format(n=no_round, project=name))
    if not groups:
        notes.append(
            "no annotation work recorded yet: figures appear once images are "
            "annotated in the browser (or simulated with scripts/simulate_flywheel.py)."
        )
    return {
        "project_id": project_id,
        "idle_s": idle_s,
        "bootstrap": {"reps": reps, "seed": seed, "level": 0.95, "unit": "image"},
        "rounds": [
            {
                "round": r.number, "round_id": r.id, "model_version_id": r.model_version_id,
                "control_fraction": r.control_fraction, "seed": r.seed,
                "started_at": r.started_at.isoformat(),
                "ended_at": r.ended_at.isoformat() if r.ended_at else None,
            }
            for r in rounds
        ],
        "groups": groups,
        "notes": notes,
    }  # fmt: skip
