"""Flywheel metrics of a project: refresh the effort cache, read it, summarise.

Orchestration over the ``db/`` data functions (``db.worked_images``, ``db.effort_cache``,
``db.rounds``) and the pure ``engine.flywheel.metrics`` (figures, bootstrap) and
``engine.flywheel.effort`` (through ``effort_loader``: the one definition of active seconds
and per-object cost). The module docstring of ``engine.flywheel.metrics`` defines every
figure and the cache. Callers that want a refresh kept commit the session (the CLI and the
API do).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from db.effort_cache import (
    CACHED_COLS,
    final_fixes,
    mark_checked,
    replace_effort_rows,
    stale_images,
    superseded_lineage,
)
from db.effort_cache import effort_rows as read_effort_rows
from db.projects import project_name
from db.rounds import project_rounds
from db.worked_images import worked_images
from engine.flywheel.effort import DEFAULT_IDLE_S
from engine.flywheel.effort_loader import load_effort
from engine.flywheel.metrics import Table, build_table, metrics_report, root_ious


def refresh_effort_cache(session: Session, done: Any, idle_s: float, chunk: int = 500) -> int:
    """Recompute the ``effort_cache`` / ``effort_object`` rows of the ``done`` images (a
    ``worked_images`` subquery) that are missing or stale (``db.effort_cache.stale_images``);
    returns how many."""
    scan = stale_images(session, done=done, idle_s=idle_s)
    for k in range(0, len(scan.todo), chunk):
        _derive_chunk(session, done, idle_s, scan.todo[k : k + chunk], scan.leases, scan.top,
                      scan.now)  # fmt: skip
    mark_checked(session, done=done, scan=scan)
    return len(scan.todo)


def refresh_project_cache(
    session: Session, *, project_id: int, idle_s: float = DEFAULT_IDLE_S
) -> int:
    """Bring the project's ``effort_cache`` rows up to date; returns how many were re-derived.

    ``project_metrics`` does this itself; call it ahead (after a bulk import, or from a job)
    so the next query finds a fresh cache. The caller commits.
    """
    done = worked_images(project_id=project_id).subquery("done")
    return refresh_effort_cache(session, done, idle_s)


def refresh_image_cache(session: Session, *, image_id: int, idle_s: float = DEFAULT_IDLE_S) -> int:
    """Derive one done image's cache rows (the task submit calls this, so metric queries in
    live use find every row fresh and never pay the derivation). The caller commits."""
    done = worked_images(project_id=None, image_id=image_id).subquery("done")
    return refresh_effort_cache(session, done, idle_s)


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
    ious = _root_ious(session, final_fixes(session, mask_ids=[o["mask_id"] for o in objects]))
    for o in objects:
        o["iou"] = ious[o["mask_id"]][1] if o["mask_id"] in ious else None
    base = {
        i: {"lease_id": leases[i], "idle_s": idle_s, "watermark": top, "seconds": seconds[i],
            "computed_at": now, "masks_checked_at": now,
            "imported_s": effort.imported.get(i, 0.0)}
        for i in ids
    }  # fmt: skip
    replace_effort_rows(
        session,
        done=done,
        ids=ids,
        objects=objects,
        base=base,
        root_ious=lambda finals: _root_ious(session, finals),
    )


def _root_ious(session: Session, finals: Sequence[Any]) -> dict[int, tuple[int, float]]:
    """``metrics.root_ious`` of final fix rows, with their images' lineage read here."""
    if not finals:
        return {}
    lineage = superseded_lineage(session, image_ids={r.image_id for r in finals})
    return root_ious(finals, lineage)


def per_image_table(session: Session, *, project_id: int, idle_s: float = DEFAULT_IDLE_S) -> Table:
    """Per-image sums for every image with annotation work in the project
    (``metrics.build_table``), read from ``effort_cache`` after refreshing its stale rows.
    ``rounds`` is ``NO_ROUND`` (0) for work done while no round was open."""
    done = worked_images(project_id=project_id).subquery("done")
    refresh_effort_cache(session, done, idle_s)
    return build_table(read_effort_rows(session, done=done), cached=CACHED_COLS)


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
    missing, and what to do); see ``metrics.metrics_report``."""
    rounds = project_rounds(session, project_id=project_id)
    table = per_image_table(session, project_id=project_id, idle_s=idle_s)
    return metrics_report(
        project_id=project_id,
        project_name=project_name(session, project_id=project_id),
        idle_s=idle_s,
        rounds=rounds,
        table=table,
        reps=reps,
        seed=seed,
    )
