"""Scale-out figures on PostgreSQL: workers sharing a project, passes over a million images.

Creates a scratch database on the server of ``--database-url`` (dropped at the end unless
``--keep``), then measures, each against a reference run in the same process tree:

1. **Two workers, one project** (``--work-images`` small synthetic images, classical
   backend, each worker a separate process): images computed twice by two workers with
   claims (must be 0) and by two workers running the pre-claims loop (the reference: walk
   the same pending list, let the unique constraint pick a winner); the 2-worker/1-worker
   throughput ratio with claims.
2. **Passes over ``--images`` generated image rows** (``INSERT ... SELECT generate_series``):
   the full-pending pass (walk every pending image of the project) and the idle pass (the
   worker's pass when everything is pre-filled), seconds and peak RSS of a fresh
   subprocess each (``resource.getrusage`` ru_maxrss; the baseline after imports is printed
   too). Reference: the pre-change ``pending_images``, frozen below, which fetched every
   row to count them and returned the whole pending list.

    .venv/bin/python scripts/bench_scale.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python scripts/bench_scale.py --database-url ... --images 20000 --work-images 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.bench_scale_data import (
    classical_version,
    generate_rows,
    mark_all_done,
    scratch_db,
    work_images_folder,
)

REPO = Path(__file__).resolve().parents[1]


# --- the reference: pre-change code, frozen -------------------------------------------------


def reference_pending_images(session: Any, *, project_id: int, model_version_id: int) -> tuple:
    """``db.prefills.pending_images`` before keyset paging (commit ee27b84):
    every ok row fetched to count them, the whole pending list returned."""
    from sqlalchemy import exists, select

    from db.models import Image, Prefill

    base = select(Image.id, Image.uri, Image.sha256).where(
        Image.project_id == project_id, Image.status == "ok"
    )
    total = len(session.execute(base).all())
    done = exists().where(
        Prefill.image_id == Image.id, Prefill.model_version_id == model_version_id
    )
    rows = session.execute(base.where(~done).order_by(Image.id)).all()
    return total, [(r[0], r[1], r[2]) for r in rows]


# --- child processes ----------------------------------------------------------------------------


def _child_worker(url: str, project_id: int, mv_id: int, mode: str) -> dict:
    """One pre-fill worker process: loads, says ``ready``, waits for ``go`` on stdin (so
    the workers start together), pre-fills; returns its compute count and wall times."""
    from db.session import make_engine, make_session_factory
    from engine.flywheel.confident_rule import ConfidentRule
    from engine.flywheel.prefill import Claims, _prefill_one, prefill_project
    from engine.segment.registry import build_segmenter

    factory = make_session_factory(make_engine(url))
    seg = build_segmenter("classical")
    calls = {"n": 0}
    propose = seg.propose

    def counted(image: Any, embedding: Any = None) -> Any:
        calls["n"] += 1
        return propose(image, embedding)

    seg.propose = counted  # type: ignore[method-assign]
    warm = work_images_folder(Path(tempfile.mkdtemp(prefix="bench_warm_")) / "w", 1, 48)
    from engine.imageio import load_rgb

    image = load_rgb(next(warm.iterdir()))
    propose(image, seg.embed(image))  # JIT-compiled kernels and caches warm, not counted
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.time()
    if mode == "claims":
        prefill_project(
            factory,
            project_id=project_id,
            segmenter=seg,
            model_version_id=mv_id,
            claims=Claims(seconds=120, batch=1),
        )
    else:  # the pre-claims loop: same list, same order, the unique constraint decides
        with factory() as s:
            _, todo = reference_pending_images(s, project_id=project_id, model_version_id=mv_id)
        rule = ConfidentRule.for_backend(seg.name)
        for image_id, uri, sha in todo:
            _prefill_one(factory, image_id=image_id, uri=uri, sha256=sha, segmenter=seg,
                         mv_id=mv_id, round_id=None, rule=rule, calibration=None)  # fmt: skip
    return {"computes": calls["n"], "start": t0, "end": time.time()}


def _child_pass(url: str, project_id: int, mv_id: int, mode: str) -> dict:
    """One pass over the generated project in a fresh process: seconds, rows, RSS (KiB)."""
    from db.prefills import count_pending, pending_images
    from db.session import make_engine, make_session_factory
    from engine.flywheel.prefill import prefill_project
    from engine.segment.registry import build_segmenter

    factory = make_session_factory(make_engine(url))
    seg = build_segmenter("classical") if mode == "idle-after" else None
    with factory() as s:  # connect (and warm the catalog) before the baseline
        s.execute(__import__("sqlalchemy").text("SELECT 1"))
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    rows = 0
    if mode in ("pending-before", "idle-before"):
        with factory() as s:
            _, todo = reference_pending_images(s, project_id=project_id, model_version_id=mv_id)
        rows = len(todo)
    elif mode == "pending-after":
        with factory() as s:
            count_pending(s, project_id=project_id, model_version_id=mv_id)
        last = 0
        while True:
            with factory() as s:
                page = pending_images(s, project_id=project_id, model_version_id=mv_id,
                                      after_id=last, worker_id="bench")  # fmt: skip
            if not page:
                break
            rows += len(page)
            last = page[-1][0]
    else:  # idle-after: the worker's real pass over a fully pre-filled project
        summary = prefill_project(factory, project_id=project_id, segmenter=seg,
                                  model_version_id=mv_id)  # fmt: skip
        rows = summary.done
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "rows": rows, "base_kb": base_kb, "peak_kb": peak_kb}


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    return subprocess.Popen(
        cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )


def _result(proc: subprocess.Popen[str]) -> dict:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench child failed with exit {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


# --- the two parts ------------------------------------------------------------------------------


def bench_workers(url: str, work_images: int, side: int) -> dict[str, Any]:
    """Part 1: computes per worker set and wall times (1 and 2 workers, claims/reference)."""
    from sqlalchemy import delete, func, select

    from db.models import Image, Mask, Prefill
    from db.session import make_engine, make_session_factory, transaction
    from engine.ingest import ingest

    engine = make_engine(url)
    factory = make_session_factory(engine)
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        folder = work_images_folder(Path(tmp) / "work", work_images, side)
        ingest(factory, project="work", paths=[folder])
        with transaction(factory) as s:
            pid = s.scalar(select(Image.project_id).limit(1))
            mv_id = classical_version(s)
        n = 0
        with factory() as s:
            n = int(s.scalar(select(func.count()).select_from(Image)) or 0)
        out: dict[str, Any] = {"images": n}
        for label, mode, workers in (("one", "claims", 1), ("two", "claims", 2),
                                     ("two_reference", "reference", 2)):  # fmt: skip
            with transaction(factory) as s:
                s.execute(delete(Mask))
                s.execute(delete(Prefill))
            procs = [_spawn("--child-worker", mode, url, str(pid), str(mv_id))
                     for _ in range(workers)]  # fmt: skip
            for p in procs:  # every worker loaded before any starts
                if p.stdout is None or p.stdout.readline().strip() != "ready":
                    raise RuntimeError("a bench worker failed to start")
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            results = [_result(p) for p in procs]
            computes = sum(r["computes"] for r in results)
            seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
            with factory() as s:
                stored = int(s.scalar(select(func.count()).select_from(Prefill)) or 0)
            out[label] = {"computes": computes, "twice": computes - stored, "seconds": seconds,
                          "stored": stored}  # fmt: skip
            print(f"  {label}: {out[label]}", file=sys.stderr, flush=True)
    engine.dispose()
    return out


def bench_passes(url: str, images: int) -> dict[str, Any]:
    """Part 2: full-pending and idle passes over ``images`` generated rows, before/after."""
    pid, mv_id, gen_s = generate_rows(url, images)
    out: dict[str, Any] = {"generate_seconds": gen_s}
    args = (url, str(pid), str(mv_id))
    print(f"  generated {images:,} rows in {gen_s:.1f} s", file=sys.stderr, flush=True)
    for mode in ("pending-before", "pending-after", "idle-before", "idle-after"):
        if mode == "idle-before":
            mark_all_done(url, pid, mv_id)
        out[mode] = _result(_spawn("--child-pass", mode, *args))
        print(f"  {mode}: {out[mode]}", file=sys.stderr, flush=True)
    return out


def _table(workers: dict[str, Any], passes: dict[str, Any], images: int) -> Any:
    from rich.table import Table

    def mb(kb: int) -> str:
        return f"{kb / 1024:.0f}"

    t = Table("measure", "before (reference)", "after", "after / before",
              title=f"scale-out on PostgreSQL ({workers.get('images', 0)} work images, "
                    f"{images:,} generated rows)")  # fmt: skip
    if workers:
        t.add_row("images computed twice by 2 workers", str(workers["two_reference"]["twice"]),
                  str(workers["two"]["twice"]), "")  # fmt: skip
        one, two = workers["one"]["seconds"], workers["two"]["seconds"]
        t.add_row("1 worker: seconds", "", f"{one:.1f}", "")
        t.add_row("2 workers: seconds", f"{workers['two_reference']['seconds']:.1f}",
                  f"{two:.1f}", "")  # fmt: skip
        t.add_row("2-worker / 1-worker throughput", "", f"{one / two:.2f}x", "")
    for label, key in (("full-pending pass", "pending"), ("idle pass", "idle")) if passes else ():
        b, a = passes[f"{key}-before"], passes[f"{key}-after"]
        t.add_row(f"{label}: seconds", f"{b['seconds']:.2f}", f"{a['seconds']:.2f}",
                  f"{a['seconds'] / max(b['seconds'], 1e-9):.2f}")  # fmt: skip
        t.add_row(f"{label}: peak RSS MB (baseline)",
                  f"{mb(b['peak_kb'])} ({mb(b['base_kb'])})",
                  f"{mb(a['peak_kb'])} ({mb(a['base_kb'])})",
                  f"{(a['peak_kb'] - a['base_kb'] + 1) / (b['peak_kb'] - b['base_kb'] + 1):.3f}"
                  " (growth)")  # fmt: skip
    return t


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=False, default=os.environ.get(
        "DATAENGINE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
        help="A PostgreSQL server (any database on it): a scratch database is created there.")  # fmt: skip
    parser.add_argument("--images", type=int, default=1_000_000,
                        help="Generated image rows for the passes (default 1,000,000).")  # fmt: skip
    parser.add_argument("--work-images", type=int, default=40,
                        help="Real images pre-filled by the workers (default 40).")  # fmt: skip
    parser.add_argument("--side", type=int, default=96, help="Side of the work images, px.")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch database.")
    parser.add_argument("--parts", default="workers,passes",
                        help="Comma-separated parts to run: workers, passes (default both).")  # fmt: skip
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    parser.add_argument("--child-worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child-pass", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_worker:
        mode, url, pid, mv = args.child_worker
        print(json.dumps(_child_worker(url, int(pid), int(mv), mode)))
        return {}
    if args.child_pass:
        mode, url, pid, mv = args.child_pass
        print(json.dumps(_child_pass(url, int(pid), int(mv), mode)))
        return {}
    if not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a PostgreSQL URL (generate_series, real concurrency)")
    if args.images < 1 or args.work_images < 1:
        parser.error("--images and --work-images must be >= 1")
    parts = set(args.parts.split(","))
    if not parts or parts - {"workers", "passes"}:
        parser.error("--parts takes workers, passes or both (comma-separated)")
    from rich.console import Console
    from sqlalchemy import text

    from db.migrate import upgrade

    console = Console(width=max(110, shutil.get_terminal_size().columns))  # a table row a line
    url, admin = scratch_db(args.database_url)
    try:
        console.print(f"scratch database {url.rsplit('/', 1)[-1]}: migrating")
        upgrade(url)
        workers: dict[str, Any] = {}
        passes: dict[str, Any] = {}
        if "workers" in parts:
            console.print(f"part 1: {args.work_images} work images, 1 and 2 worker processes")
            workers = bench_workers(url, args.work_images, args.side)
        if "passes" in parts:
            console.print(f"part 2: {args.images:,} generated image rows")
            passes = bench_passes(url, args.images)
    finally:
        if not args.keep:
            with admin.connect() as conn:
                name = url.rsplit("/", 1)[-1]
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    console.print(_table(workers, passes, args.images))
    figures = {"workers": workers, "passes": passes, "images": args.images}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
