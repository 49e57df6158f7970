"""Benchmark: flywheel metrics at scale (default 10,000 images / 500,000 masks, ~800k events)
on SQLite and PostgreSQL. Generates the volume, then times ``engine.flywheel.metrics_project.project_metrics``.

    .venv/bin/python scripts/bench_metrics.py                       # both databases, full size
    .venv/bin/python scripts/bench_metrics.py --quick               # 1,000 images
    .venv/bin/python scripts/bench_metrics.py --no-postgres --images 2000

Each image: 36 model proposals (26 confident: 19 accepted, 4 rejected, 3 fixed), 3
``model_edited`` finals, 11 human-added masks; events: open, 23 decisions, 3 fixes (fix_start,
2 clicks, commit), 11 adds (3 clicks, commit), submit. 20 % of images are in the control arm.
Prints per-phase timings, the ratio to the 1 s target and a met / not met line per database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db.migrate import upgrade
from db.models import Event, Image, Lease, Mask, ModelVersion, Project, Round, User, utcnow
from db.session import make_engine, make_session_factory, transaction
from engine.flywheel import events as ek
from engine.flywheel.metrics import summarise
from engine.flywheel.metrics_project import (
    per_image_table,
    project_metrics,
    refresh_project_cache,
)
from engine.masks import encode_rle, mask_bbox

H = W = 64
MASKS_PER_IMAGE = 50


def _templates(n: int = 16) -> list[tuple[dict[str, Any], list[float], int]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        m = np.zeros((H, W), bool)
        x0, y0 = rng.integers(0, 40, 2)
        m[y0 : y0 + rng.integers(5, 24), x0 : x0 + rng.integers(5, 24)] = True
        out.append((encode_rle(m), mask_bbox(m), int(m.sum())))
    return out


def generate(session: Session, n_images: int, batch: int = 500) -> int:
    """Insert one project with ``n_images`` done images; returns the project id."""
    tpl = _templates()
    p = Project(name=f"bench-{uuid.uuid4().hex[:6]}", labels=["thing"])
    u = User(name=f"bench-{uuid.uuid4().hex[:6]}", role="annotator", password_hash="x")
    mv = ModelVersion(name="bench", backend="classical")
    session.add_all([p, u, mv])
    session.flush()
    rnd = Round(project_id=p.id, number=1, model_version_id=mv.id, control_fraction=0.2)
    session.add(rnd)
    session.flush()
    now = utcnow() - dt.timedelta(hours=1)  # past activity, older than db.effort_cache.SETTLE
    rng = np.random.default_rng(1)
    next_mask = (session.execute(text("SELECT COALESCE(MAX(id), 0) FROM mask")).scalar() or 0) + 1
    for start in range(0, n_images, batch):
        k = min(batch, n_images - start)
        images = [{"project_id": p.id, "uri": f"/bench/{start + i}.jpg",
                   "sha256": uuid.uuid4().hex * 2, "width": W, "height": H, "status": "ok"}
                  for i in range(k)]  # fmt: skip
        ids = list(session.scalars(insert(Image).returning(Image.id), images))
        leases = [{"image_id": i, "user_id": u.id, "stage": "annotate", "round_id": rnd.id,
                   "arm": "control" if rng.random() < 0.2 else "prefill", "created_at": now,
                   "heartbeat_at": now, "expires_at": now + dt.timedelta(minutes=30),
                   "completed_at": now} for i in ids]  # fmt: skip
        lease_ids = list(session.scalars(insert(Lease).returning(Lease.id), leases))
        masks: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for image_id, lease_id in zip(ids, lease_ids, strict=True):
            sid, t, seq = uuid.uuid4().hex, 0.0, 0

            def ev(kind: str, mask_id: int | None = None, dt_ms: float = 0.0,
                   _img: int = image_id, _lease: int = lease_id, _sid: str = sid,
                   _events: list[dict[str, Any]] = events) -> None:  # fmt: skip
                nonlocal t, seq
                t += dt_ms
                seq += 1
                _events.append({"uuid": str(uuid.uuid4()), "user_id": u.id, "image_id": _img,
                               "mask_id": mask_id, "lease_id": _lease, "session_id": _sid,
                               "seq": seq, "kind": kind, "payload": {}, "client_time": t,
                               "visible": True, "server_time": now})  # fmt: skip

            def mask(status: str, source: str, confident: bool = False, parent: int | None = None,
                     _img: int = image_id, _masks: list[dict[str, Any]] = masks) -> int:  # fmt: skip
                nonlocal next_mask
                rle, bbox, area = tpl[int(rng.integers(len(tpl)))]
                _masks.append({"id": next_mask, "image_id": _img, "rle": rle, "bbox": bbox,
                              "area": area, "source": source, "status": status,
                              "model_version_id": mv.id, "round_id": rnd.id,
                              "predicted_iou": 0.9, "stability": 0.95, "confident": confident,
                              "parent_id": parent, "version": 1, "meta": {},
                              "created_at": now, "updated_at": now})  # fmt: skip
                next_mask += 1
                return next_mask - 1

            ev(ek.IMAGE_OPEN)
            for status in ["accepted"] * 19 + ["rejected"] * 4:
                ev(ek.MASK_ACCEPT if status == "accepted" else ek.MASK_REJECT,
                   mask(status, "model", True), float(rng.integers(800, 4000)))  # fmt: skip
            for _ in range(3):
                old = mask("superseded", "model", True)
                ev(ek.FIX_START, old, 1500.0)
                ev(ek.PROMPT_CLICK, None, 2500.0)
                ev(ek.PROMPT_CLICK, None, 2500.0)
                ev(ek.OBJECT_COMMIT, mask("accepted", "model_edited", parent=old), 1000.0)
            for _ in range(10):
                mask("proposed", "model")
            for _ in range(11):
                for _ in range(3):
                    ev(ek.PROMPT_CLICK, None, float(rng.integers(1500, 6000)))
                ev(ek.OBJECT_COMMIT, mask("accepted", "human"), 1000.0)
            ev(ek.SUBMIT, None, 1000.0)
        session.execute(insert(Mask), masks)
        session.execute(insert(Event), events)
        print(f"  generated {start + k}/{n_images} images", end="\r", flush=True)
    print()
    return p.id


def _touch(session: Session, project_id: int, n: int) -> None:
    """New activity on ``n`` done images: one more event each and one mask edit each."""
    rows = session.execute(
        text("SELECT l.image_id, l.id, l.user_id FROM lease l JOIN round r ON r.id = l.round_id "
             "WHERE r.project_id = :p ORDER BY l.image_id LIMIT :n"), {"p": project_id, "n": n}
    ).all()  # fmt: skip
    now = utcnow()
    session.execute(insert(Event), [
        {"uuid": str(uuid.uuid4()), "user_id": u, "image_id": i, "lease_id": lease,
         "session_id": uuid.uuid4().hex, "seq": 1, "kind": ek.IMAGE_OPEN, "payload": {},
         "client_time": 0.0, "visible": True, "server_time": now}
        for i, lease, u in rows])  # fmt: skip
    for i, _, _ in rows:
        mask_id = session.execute(
            text("SELECT id FROM mask WHERE image_id = :i AND status = 'rejected' LIMIT 1"),
            {"i": i},
        ).scalar()
        m = session.get(Mask, mask_id)
        m.status = "accepted"  # a reviewer overturns a rejection (updated_at stamped)


def bench(url: str, n_images: int, repeats: int, reps: int, touched: int) -> dict[str, Any]:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    t0 = time.perf_counter()
    with transaction(factory) as s:
        project_id = generate(s, n_images)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
        n_masks = conn.exec_driver_sql("SELECT COUNT(*) FROM mask").scalar()
        n_events = conn.exec_driver_sql("SELECT COUNT(*) FROM event").scalar()
    gen_s = time.perf_counter() - t0
    a = time.perf_counter()
    with transaction(factory) as s:  # first query derives every image's sums (then cached)
        project_metrics(s, project_id=project_id, reps=reps)
    cold_s = time.perf_counter() - a
    phases: dict[str, list[float]] = {"check": [], "table": [], "bootstrap": [], "total": []}
    for _ in range(repeats):
        with transaction(factory) as s:
            a = time.perf_counter()
            refresh_project_cache(s, project_id=project_id)  # staleness checks only (fresh)
            b = time.perf_counter()
            table = per_image_table(s, project_id=project_id)  # checks again + reads the cache
            c = time.perf_counter()
            summarise(table, reps=reps)
            d = time.perf_counter()
        with transaction(factory) as s:  # what the CLI and the API run
            project_metrics(s, project_id=project_id, reps=reps)
            e = time.perf_counter()
        for k, v in zip(phases, (b - a, c - b, d - c, e - d), strict=True):
            phases[k].append(v)
    with transaction(factory) as s:
        _touch(s, project_id, touched)
    with transaction(factory) as s:
        a = time.perf_counter()
        project_metrics(s, project_id=project_id, reps=reps)
        touched_s = time.perf_counter() - a
    engine.dispose()
    return {"images": n_images, "masks": n_masks, "events": n_events, "generate_s": gen_s,
            "cold_s": cold_s, "touched_s": touched_s,
            **{f"{k}_s": min(v) for k, v in phases.items()},
            "total_median_s": statistics.median(phases["total"])}  # fmt: skip


def _pg_database(base_url: str) -> tuple[str, Any]:
    admin = make_engine(base_url, isolation_level="AUTOCOMMIT")
    name = f"de_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=10_000, help="Images done (50 masks each).")
    ap.add_argument("--quick", action="store_true", help="1,000 images (a smoke run).")
    ap.add_argument(
        "--repeats", type=int, default=3, help="Timed runs per database (min reported)."
    )
    ap.add_argument("--reps", type=int, default=1000, help="Bootstrap resamples.")
    ap.add_argument(
        "--touched", type=int, default=50,
        help="Images given a new event and a mask edit before the last timed query.",
    )  # fmt: skip
    ap.add_argument(
        "--postgres",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="Server URL; a fresh database is created there and dropped after.",
    )
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only.")
    ap.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only.")
    args = ap.parse_args(argv)
    n = 1000 if args.quick else args.images
    results = {}
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            upgrade(url)
            print(f"sqlite: generating {n} images ...")
            results["sqlite"] = bench(url, n, args.repeats, args.reps, args.touched)
    if not args.no_postgres:
        url, drop = _pg_database(args.postgres)
        try:
            upgrade(url)
            print(f"postgresql: generating {n} images ...")
            results["postgresql"] = bench(url, n, args.repeats, args.reps, args.touched)
        finally:
            drop()
    print(f"\ncold = first query on a never-queried database (derives and caches every image); "
          f"after {args.touched} = the query after {args.touched} images got a new event and a "
          "mask edit; check / table / bootstrap / total = phases of a warm query (min of "
          f"{args.repeats}); total is project_metrics as the CLI and API run it")  # fmt: skip
    print(f"{'database':<11} {'images':>7} {'masks':>8} {'events':>8} {'cold s':>7} "
          f"{'after ' + str(args.touched):>10} {'check s':>8} {'table s':>8} {'boot s':>7} "
          f"{'total s':>8} {'median':>7} {'total / 1 s':>11}")  # fmt: skip
    for name, r in results.items():
        print(f"{name:<11} {r['images']:>7} {r['masks']:>8} {r['events']:>8} {r['cold_s']:>7.2f} "
              f"{r['touched_s']:>10.3f} {r['check_s']:>8.3f} {r['table_s']:>8.3f} "
              f"{r['bootstrap_s']:>7.3f} {r['total_s']:>8.3f} {r['total_median_s']:>7.3f} "
              f"{r['total_s'] / 1.0:>10.2f}x")  # fmt: skip
    for name, r in results.items():
        met = "met" if r["total_s"] < 1.0 else "NOT met"
        print(f"{name}: target < 1 s for a warm query: {met} ({r['total_s']:.3f} s min, "
              f"{r['total_median_s']:.3f} s median); after {args.touched} touched images: "
              f"{'met' if r['touched_s'] < 1.0 else 'NOT met'} ({r['touched_s']:.3f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
