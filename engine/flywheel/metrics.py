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

This module is pure (plain arrays in, dicts out); ``engine.flywheel.metrics_project`` reads
the database through ``db.worked_images`` / ``db.effort_cache`` and calls it.

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

ARMS = ("prefill", "control")
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
NO_ROUND = 0  # ``Table.rounds`` value of work done while no round was open (rounds start at 1)
NO_ROUND_NOTE = (
    "{n} image(s) were worked while no round was open (the 'no round' row); rounds bind work "
    "to a model version and a control arm: start one with `dataengine round start --project "
    "{project} --control-fraction 0.2` (the first `dataengine prefill` / `dataengine up` opens "
    "round 1 itself)."
)
NO_WORK_NOTE = (
    "no annotation work recorded yet: figures appear once images are "
    "annotated in the browser (or simulated with scripts/simulate_flywheel.py)."
)


@dataclass
class Table:
    """Per-image sums: ``image_ids`` (n,) int64, ``rounds`` (n,), ``arms`` (n,) str, ``cols`` name -> (n,) float64."""

    image_ids: np.ndarray
    rounds: np.ndarray
    arms: np.ndarray
    cols: dict[str, np.ndarray]


def build_table(rows: Sequence[Sequence[Any]], *, cached: Sequence[str]) -> Table:
    """The per-image ``Table`` of rows ``(image_id, round, arm, lease_id, *cached)``, one per
    worked image (``db.effort_cache.effort_rows``; ``cached`` names the value columns).

    Finished images (``lease_id`` set, ``one`` = 1) carry every figure; an unfinished image
    (released, expired or open lease) carries only ``released_s`` (its measured seconds) and
    ``imported_s``. ``round`` None becomes ``NO_ROUND`` (0). NULL values (a row lost to a
    concurrent refresh) are zeros.
    """
    n = len(rows)
    columns = ("one", *cached, "released_s")
    image_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    rounds = np.fromiter((r[1] or NO_ROUND for r in rows), dtype=np.int64, count=n)
    arms = np.asarray([r[2] for r in rows], dtype=object)
    finished = np.fromiter((r[3] is not None for r in rows), dtype=bool, count=n)
    values = np.asarray([r[4:] for r in rows], dtype=np.float64).reshape(n, len(cached))
    values = np.nan_to_num(values, nan=0.0)  # a row lost to a concurrent refresh: zeros
    cols = {c: np.zeros(n, dtype=np.float64) for c in columns}
    for j, c in enumerate(cached):
        cols[c] = np.ascontiguousarray(values[:, j])
    cols["one"][finished] = 1.0
    cols["released_s"][~finished] = cols["seconds"][~finished]
    for c in columns:
        if c not in ("one", "released_s", "imported_s"):
            cols[c][~finished] = 0.0
    control = arms == "control"  # nothing is shown on control images, whatever exists
    cols["shown"][control] = 0.0
    cols["accepted_as_is"][control] = 0.0
    return Table(image_ids, rounds, arms, cols)


def root_ious(
    finals: Sequence[Any], lineage: dict[int, tuple[int | None, str, dict[str, Any]]]
) -> dict[int, tuple[int, float]]:
    """mask id -> (image id, IoU with the ``model`` proposal it began as) for final
    ``model_edited`` rows ``(id, image_id, parent_id, rle)``, following ``lineage`` (mask id ->
    (parent id, source, COCO RLE) of superseded masks); rows without one are left out."""
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


def _coco(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


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


def metrics_report(
    *,
    project_id: int,
    project_name: str | None,
    idle_s: float,
    rounds: Sequence[Any],
    table: Table,
    reps: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The dict ``project_metrics`` returns, from the project's ``rounds`` (rows with number,
    id, model_version_id, control_fraction, seed, started_at, ended_at) and its ``table``."""
    groups = summarise(table, reps=reps, seed=seed)
    notes = []
    measured = (table.cols["one"] > 0) | (table.cols["released_s"] > 0)
    no_round = int(((table.rounds == NO_ROUND) & measured).sum())
    if no_round:
        notes.append(NO_ROUND_NOTE.format(n=no_round, project=project_name))
    if not groups:
        notes.append(NO_WORK_NOTE)
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
