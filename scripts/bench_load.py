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
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "load-bench-password-1"
ROUTES = ("next", "events", "heartbeat", "mask add", "submit")
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
    ap.add_argument("--annotators", type=int, default=20, help="Simulated annotators.")
    ap.add_argument("--images", type=int, default=None, help="Images (default 40 per annotator).")
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

    count = args.images or 40 * args.annotators
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
def server(url: str, work: Path, workers: int | None) -> Iterator[str]:
    """``dataengine serve`` in a subprocess on a free loopback port; its base URL."""
    from scripts.bench_common import free_port, serving

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATAENGINE_DATABASE_URL": url,
        "DATAENGINE_DATA_DIR": str(work / "data"),
        "DATAENGINE_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "scripts.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    with serving(
        proc, base, ready_path="/readyz", start_timeout_s=180, stop_timeout_s=20, poll_s=0.2
    ) as ready:
        yield ready


@contextmanager
def server_or_target(args: argparse.Namespace, url: str, work: Path) -> Iterator[str]:
    """The base URL: ``--url`` as given, or a ``dataengine serve`` started here."""
    if args.url:
        yield args.url
        return
    with server(url, work, args.workers) as base:
        yield base


@dataclass
class Tally:
    """Latencies (ms) and errors per route, stored events.

    ``events_stored``/``images_done``: in the measured window (for rates); ``events_sent_ok``
    and ``events_answered_stored``: over the whole run (events in batches answered 200, and
    the ``stored`` counts of those answers), compared with the rows in the database."""

    lat: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in ROUTES})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROUTES, 0))
    samples: list[str] = field(default_factory=list)
    events_stored: int = 0
    images_done: int = 0
    events_sent_ok: int = 0
    events_answered_stored: int = 0
    client_cpu_s: float = 0.0
    ran_out: bool = False


def _rect_rle(h: int, w: int) -> dict[str, Any]:
    """Uncompressed COCO RLE (column-major) of a full-height band over the middle half."""
    left, right = w // 4, 3 * w // 4
    return {"size": [h, w], "counts": [left * h, (right - left) * h, (w - right) * h]}


def _events(n: int, session_id: str, seq: int, image_id: int, lease_id: int) -> list[dict]:
    kinds = ["image_open", "mask_select", "prompt_click", "prompt_click", "object_commit", "submit"]
    out = []
    for i in range(n):
        out.append(
            {
                "uuid": str(uuid.uuid4()),
                "session_id": session_id,
                "seq": seq + i,
                "kind": kinds[(seq + i) % len(kinds)],
                "client_time": time.perf_counter() * 1000,
                "image_id": image_id,
                "lease_id": lease_id,
                "payload": {"x": 10, "y": 12} if i % 2 else {},
            }
        )
    return out


async def annotator(
    base: str, token: str, project_id: int, start: float, end: float, tally: Tally
) -> None:
    """One annotator's loop (module docstring) until ``end``; requests that both start after
    ``start`` and end by ``end`` (monotonic seconds) are counted."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    session_id = uuid.uuid4().hex
    seq = 0
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=30, limits=limits
    ) as client:

        async def call(route: str, method: str, path: str, **kw: Any) -> Any:
            t0 = time.perf_counter()
            counted = time.monotonic() >= start
            r = await client.request(method, path, **kw)
            ms = (time.perf_counter() - t0) * 1000
            if route == "next" and r.status_code == 404:
                return r  # the queue ran out (not counted; see below)
            if counted and time.monotonic() <= end:
                tally.lat[route].append(ms)
                if r.status_code != 200:
                    tally.errors[route] += 1
                    if len(tally.samples) < 5:
                        tally.samples.append(f"{route} {r.status_code} {r.text[:160]}")
            return r

        while time.monotonic() < end:
            r = await call("next", "POST", "/api/tasks/next", json={"project_id": project_id})
            if r.status_code == 404:  # every image is taken: this annotator stops
                tally.ran_out = True
                return
            if r.status_code != 200:
                await asyncio.sleep(0.05)
                continue
            task = r.json()
            lease_id, image = task["lease_id"], task["image"]
            image_id = image["id"]
            for n in (6, 2):
                r = await call(
                    "events",
                    "POST",
                    "/api/events",
                    json={"events": _events(n, session_id, seq, image_id, lease_id)},
                )
                seq += n
                if r.status_code == 200:
                    stored = int(r.json().get("stored", 0))
                    tally.events_sent_ok += n
                    tally.events_answered_stored += stored
                    if start <= time.monotonic() <= end:
                        tally.events_stored += stored
                if n == 6:
                    await call("heartbeat", "POST", f"/api/tasks/{lease_id}/heartbeat", json={})
                    rle = _rect_rle(image["height"], image["width"])
                    await call(
                        "mask add",
                        "POST",
                        f"/api/images/{image_id}/masks",
                        json={"rle": rle, "label": "object", "lease_id": lease_id},
                    )
            r = await call("submit", "POST", f"/api/tasks/{lease_id}/submit", json={"ops": []})
            if r.status_code == 200 and start <= time.monotonic() <= end:
                tally.images_done += 1


async def drive(
    base: str, tokens: list[str], project_id: int, seconds: float, warmup: float
) -> Tally:
    """Every annotator at once: ``warmup`` seconds unrecorded, then ``seconds`` measured."""
    tally = Tally()
    start = time.monotonic() + warmup
    end = start + seconds
    cpu0 = time.process_time()
    tasks = [annotator(base, t, project_id, start, end, tally) for t in tokens]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=warmup + seconds + 60)
    tally.client_cpu_s = time.process_time() - cpu0
    return tally


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


async def reference(base: str, clients: int, seconds: float) -> tuple[float, float]:
    """The same number of clients on ``GET /livez`` (no database, no login) for ``seconds``:
    (requests/s, p50 ms), the ceiling this machine and client allow, measured in the same run."""
    import httpx

    lat: list[float] = []
    end = time.monotonic() + seconds

    async def one() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                r = await client.get("/livez")
                if r.status_code == 200 and time.monotonic() <= end:
                    lat.append((time.perf_counter() - t0) * 1000)

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(clients))), seconds + 60)
    return len(lat) / seconds, _pct(lat, 50)


def _pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


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
            "p50": _pct(lat, 50),
            "p95": _pct(lat, 95),
            "errors": tally.errors[route],
        }
    rows["mixed"] = {
        "n": len(every),
        "req/s": len(every) / seconds,
        "p50": _pct(every, 50),
        "p95": _pct(every, 95),
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
            with server_or_target(args, url, work) as base:
                # the reference first: after the load, the app is still busy embedding the
                # images the annotators raced through (precompute), which is not its ceiling
                ref = asyncio.run(reference(base, args.annotators, ref_s))
                t_load = time.monotonic()
                tally = asyncio.run(drive(base, tokens, project_id, args.seconds, args.warmup))
                t_load = time.monotonic() - t_load
            rows_stored = event_rows(url, project_id)
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
                    "ran_out": tally.ran_out,
                    "reference_req_per_s": ref[0],
                    "mixed_over_reference": ratio,
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
