"""The app under load: N simulated annotators working as fast as answers come back.

Starts a real ``dataengine serve`` (``--workers``; default: serve's own default) on a fresh
SQLite file or a fresh PostgreSQL database on a free 127.0.0.1 port, or targets a running
one (``--url``, loopback only: this script refuses any other host). It creates ``--annotators``
annotator users (API tokens) and a project of generated images (real ingest of small PNGs),
then drives every annotator for ``--seconds`` with one async httpx client each, in a loop per
image:

    next      POST /api/tasks/next
    events    POST /api/events              (a batch of 6 events: open, clicks, commit)
    heartbeat POST /api/tasks/{lease}/heartbeat
    mask add  POST /api/images/{id}/masks   (a rectangle as uncompressed COCO RLE)
    events    POST /api/events              (a batch of 2 events: commit, submit)
    submit    POST /api/tasks/{lease}/submit

and prints requests/s and p50/p95 latency per route and for the mixed total, stored
events/s, the client's own CPU use (share of one core: is the client the bottleneck?), a
check that no event was lost (events sent in batches answered 200, events those answers
report stored, and event rows in the database once every client has drained: equal by
construction, whatever the timing), and a reference measured in the same run: the same
clients on ``GET /livez`` (no database, no login), with the ratio mixed / reference (the
machine's and client's ceiling, so runs on a busy machine can be compared). Any answer other
than 200 is counted per route as an error (and the first few are printed), except
``next``'s 404 once every image is taken: that annotator stops, and a warning says to pass
more ``--images``. Bounded in time: set-up, ``--seconds`` of load, and a hard stop on each
request.

    .venv/bin/python scripts/bench_load.py --db postgres --annotators 20 --seconds 20
    .venv/bin/python scripts/bench_load.py --annotators 2 --seconds 3 --images 40 --json

Ablation, pool_pre_ping on/off in the app's engine (5 alternating pairs, 20 annotators, 15 s,
machine load 15-20, /livez reference 22-245 req/s across runs): mixed req/s medians 71.7 on,
59.1 off; per-pair off/on 1.07 1.62 0.69 1.43 0.64; events p95 medians 611 / 596 ms. No gain
above the noise: pre-ping kept (tests/annotator_ui/test_db_reconnect.py is the bar to drop it).
Again on a quiet machine with 17 statements per image loop (2 alternating pairs): mixed
183.7 and 199.7 req/s on, 196.5 and 195.3 off; app CPU 6.3 / 5.7 ms on, 5.7 / 5.9 off: kept.

Ablation, ``--listen`` (serve's sockets for its 2 workers; 7 alternating pairs, 20 annotators,
PostgreSQL, /livez reference ~1400 req/s): ``shared`` (uvicorn's one socket) 370, 393, 390,
376, 267, 390 and 401 mixed req/s, the app's CPU split between the workers 76/24, 55/45,
59/41, 56/44, 100/0, 56/44 and 51/49 %; ``per-worker`` (a SO_REUSEPORT socket each) 391, 395,
392, 387, 388, 404 and 397 req/s, split 50/50 to 55/45 %. With one shared socket about one
run in four put every connection on one worker: the throughput of one process (255-267
req/s, also seen in earlier runs). The CPU split is printed after "by worker".
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.load_client import ROUTES, Tally, drive, pct, reference  # noqa: E402

PASSWORD = "load-bench-password-1"
IMAGE_SIDE = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from scripts.bench_common import add_database_args

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_database_args(ap)
    ap.add_argument(
        "--url",
        default=None,
        help="Target a running app at this loopback URL instead of starting one; its database "
        "must be --target-db-url (users and the project are created there).",
    )
    ap.add_argument("--target-db-url", default=None, help="Database of the app given by --url.")
    ap.add_argument("--workers", type=int, default=None, help="serve --workers (default: serve's).")
    from scripts.commands.serve import LISTEN_MODES

    ap.add_argument(
        "--listen",
        choices=LISTEN_MODES,
        default=None,
        help="serve --listen (default: serve's, per-worker): the ablation of per-worker sockets.",
    )
    ap.add_argument("--annotators", type=int, default=20, help="Simulated annotators.")
    ap.add_argument(
        "--images",
        type=int,
        default=None,
        help="Images (default 100 per annotator: at 200+ req/s, 40 ran out before the end).",
    )
    ap.add_argument("--seconds", type=float, default=15.0, help="Length of the load phase.")
    ap.add_argument(
        "--warmup",
        type=float,
        default=8.0,
        help="Seconds of load before measuring (every worker process up, caches warm).",
    )
    ap.add_argument("--json", action="store_true", help="Also print the figures as one JSON line.")
    args = ap.parse_args(argv)
    if args.annotators < 1 or args.seconds <= 0 or args.warmup < 0:
        ap.error("--annotators must be >= 1, --seconds > 0 and --warmup >= 0")
    if args.url is not None:
        check_loopback(args.url)
        if not args.target_db_url:
            ap.error("--url needs --target-db-url (where to create the users and the project)")
    return args


def check_loopback(url: str) -> None:
    """Refuse a URL whose host is not a loopback address (this is a load generator)."""
    host = urlsplit(url).hostname or ""
    try:
        loop = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loop = False
    if not loop:
        raise SystemExit(f"refusing {url!r}: bench_load only targets loopback (127.0.0.1, ::1)")


@contextmanager
def database(args: argparse.Namespace, work: Path) -> Iterator[str]:
    """A fresh migrated database URL (SQLite file in ``work`` or a new PostgreSQL db), or
    ``--target-db-url`` as given."""
    if args.target_db_url:
        yield args.target_db_url
        return
    from scripts.bench_common import fresh_database

    with fresh_database(args.db, args.pg_url, work, "bench_load") as url:
        yield url


def make_images(folder: Path, count: int) -> None:
    """``count`` distinct small PNGs (seeded noise), so each is its own image row."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        arr = rng.integers(0, 256, size=(IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:05d}.png")


def setup(url: str, work: Path, args: argparse.Namespace) -> tuple[int, list[str]]:
    """The project (ingested images) and the annotators; returns (project id, tokens)."""
    from db.session import make_engine, make_session_factory, transaction
    from db.users import create_user, issue_token
    from engine.ingest import ingest

    count = args.images or 100 * args.annotators
    make_images(work / "images", count)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    tag = uuid.uuid4().hex[:6]
    summary = ingest(factory, project=f"load-{tag}", paths=[work / "images"])
    if summary.added != count:
        raise RuntimeError(f"ingest added {summary.added} of {count} images")
    from db.projects import get_or_create_project

    tokens = []
    with transaction(factory) as s:
        project_id = get_or_create_project(s, name=f"load-{tag}").id
        for i in range(args.annotators):
            user = create_user(s, name=f"load{tag}a{i}", role="annotator", password=PASSWORD)
            tokens.append(issue_token(s, user=user, kind="api", hours=2))
    engine.dispose()
    return project_id, tokens


@contextmanager
def server(
    url: str, work: Path, workers: int | None, listen: str | None = None
) -> Iterator[tuple[str, int]]:
    """``dataengine serve`` in a subprocess on a free loopback port; (base URL, its pid)."""
    from scripts.bench_common import free_port, serving, start_serve

    port = free_port()
    extra = [] if workers is None else ["--workers", str(workers)]
    extra += [] if listen is None else ["--listen", listen]
    proc = start_serve(url, work / "data", port, *extra)
    base = f"http://127.0.0.1:{port}"
    with serving(
        proc, base, ready_path="/readyz", start_timeout_s=180, stop_timeout_s=20, poll_s=0.2
    ) as ready:
        yield ready, proc.pid


@contextmanager
def server_or_target(
    args: argparse.Namespace, url: str, work: Path
) -> Iterator[tuple[str, int | None]]:
    """(base URL, pid of the app or None): ``--url`` as given, or a ``dataengine serve``
    started here."""
    if args.url:
        yield args.url, None
        return
    with server(url, work, args.workers, args.listen) as started:
        yield started


def app_cpu_s(pid: int | None) -> tuple[float, dict[int, float]]:
    """CPU seconds (user + system) used so far by the app (its process and all children)
    and by each of its worker processes, by pid; (NaN, {}) for an app not started here."""
    if pid is None:
        return float("nan"), {}
    import psutil

    from scripts.bench_common import serve_workers

    def used(proc: psutil.Process) -> float:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return t.user + t.system

    root = psutil.Process(pid)
    total = sum(used(p) for p in [root, *root.children(recursive=True)])
    return total, {w.pid: used(w) for w in serve_workers(pid)}


def worker_shares(before: dict[int, float], after: dict[int, float]) -> list[float]:
    """Each worker process's part of the workers' CPU during the load, largest first (one
    process serving the load while the others idle shows as 100% / 0%)."""
    spent = [after[p] - before.get(p, 0.0) for p in after]
    total = sum(spent)
    return sorted((v / total for v in spent), reverse=True) if total > 0 else []


def event_rows(url: str, project_id: int) -> int:
    """Event rows stored about the project's images (read after every client drained)."""
    from sqlalchemy import func, select

    from db.models import Event, Image
    from db.session import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            q = select(func.count()).select_from(Event).join(Image, Image.id == Event.image_id)
            return int(conn.scalar(q.where(Image.project_id == project_id)) or 0)
    finally:
        engine.dispose()


def table(tally: Tally, seconds: float) -> dict[str, dict[str, float]]:
    """Per route and ``mixed``: n, requests/s, p50 and p95 (ms), errors."""
    rows: dict[str, dict[str, float]] = {}
    every: list[float] = []
    for route in ROUTES:
        lat = tally.lat[route]
        every += lat
        rows[route] = {
            "n": len(lat),
            "req/s": len(lat) / seconds,
            "p50": pct(lat, 50),
            "p95": pct(lat, 95),
            "errors": tally.errors[route],
        }
    rows["mixed"] = {
        "n": len(every),
        "req/s": len(every) / seconds,
        "p50": pct(every, 50),
        "p95": pct(every, 95),
        "errors": sum(tally.errors.values()),
    }
    return rows


def print_table(rows: dict[str, dict[str, float]]) -> None:
    header = f"{'route':10} {'n':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7}"
    print(header)
    print("-" * len(header))
    for route, r in rows.items():
        print(
            f"{route:10} {r['n']:7d} {r['req/s']:8.1f} {r['p50']:8.1f} {r['p95']:8.1f} "
            f"{r['errors']:7d}"
        )


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = Path(tmp)
        with database(args, work) as url:
            t0 = time.perf_counter()
            project_id, tokens = setup(url, work, args)
            print(
                f"load on {args.db if not args.url else args.url}: {args.annotators} annotators, "
                f"{args.seconds:g} s after {args.warmup:g} s warm-up, {os.cpu_count()} CPUs, serve --workers "
                f"{args.workers if args.workers is not None else 'default'} "
                f"(set-up {time.perf_counter() - t0:.1f} s)",
                flush=True,
            )
            ref_s = min(args.seconds, 5.0)
            with server_or_target(args, url, work) as (base, pid):
                # the reference first: after the load, the app is still busy embedding the
                # images the annotators raced through (precompute), which is not its ceiling
                ref = asyncio.run(reference(base, args.annotators, ref_s))
                t_load, (cpu0, workers0) = time.monotonic(), app_cpu_s(pid)
                tally = asyncio.run(drive(base, tokens, project_id, args.seconds, args.warmup))
                t_load, (cpu1, workers1) = time.monotonic() - t_load, app_cpu_s(pid)
            rows_stored = event_rows(url, project_id)
    app_cpu, shares = cpu1 - cpu0, worker_shares(workers0, workers1)
    rows = table(tally, args.seconds)
    print_table(rows)
    print(
        f"stored events/s {tally.events_stored / args.seconds:.1f}   "
        f"images submitted/s {tally.images_done / args.seconds:.1f}"
    )
    print(
        f"events: {tally.events_sent_ok} sent in batches answered 200, "
        f"{tally.events_answered_stored} stored per those answers, {rows_stored} rows in the "
        f"database ({'equal' if tally.events_sent_ok == tally.events_answered_stored == rows_stored else 'MISMATCH: events lost or duplicated'})"
    )
    client_share = tally.client_cpu_s / t_load if t_load > 0 else float("nan")
    print(
        f"client CPU: {tally.client_cpu_s:.1f} s in {t_load:.1f} s = {client_share:.0%} of one core"
    )
    # requests in the whole load phase (warm-up included) at the measured mixed rate
    app_ms = 1000 * app_cpu / (rows["mixed"]["req/s"] * t_load) if rows["mixed"]["n"] else 0.0
    print(
        f"app CPU: {app_cpu:.1f} s in {t_load:.1f} s = {app_cpu / t_load:.0%} of one core, "
        f"{app_ms:.1f} ms per request"
        + (f"; by worker {' / '.join(f'{x:.0%}' for x in shares)}" if len(shares) > 1 else "")
    )
    ratio = rows["mixed"]["req/s"] / ref[0] if ref[0] else float("nan")
    print(
        f"reference GET /livez, same clients, {ref_s:g} s: {ref[0]:.1f} req/s (p50 {ref[1]:.1f} "
        f"ms); mixed / reference = {ratio:.2f}"
    )
    if tally.ran_out:
        print("WARNING: the images ran out before the end: the rates are too low; pass --images")
    for sample in tally.samples:
        print(f"  error: {sample}")
    if args.json:
        print(
            json.dumps(
                {
                    "rows": rows,
                    "events_stored_per_s": tally.events_stored / args.seconds,
                    "images_per_s": tally.images_done / args.seconds,
                    "events_sent_ok": tally.events_sent_ok,
                    "events_answered_stored": tally.events_answered_stored,
                    "event_rows": rows_stored,
                    "client_cpu_share": client_share,
                    "app_cpu_ms_per_request": app_ms,
                    "worker_cpu_shares": shares,
                    "ran_out": tally.ran_out,
                    "reference_req_per_s": ref[0],
                    "mixed_over_reference": ratio,
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
