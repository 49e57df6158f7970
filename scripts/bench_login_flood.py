"""Login flood: what 16 parallel password guessers achieve, and what they cost other users.

Starts the real app (``uvicorn annotator_ui.main:app``, settings from the environment) in a
subprocess on a free 127.0.0.1 port, over a fresh SQLite file or a fresh PostgreSQL
database, once per configuration:

- ``before``: throttle off, password checks unbounded (the app as it was);
- ``bounded``: throttle off, argon2 checks bounded (max_concurrent_password_checks);
- ``after``: the defaults: throttle on (per account and per address) and bounded checks.

In each it measures other users' latency on an authenticated route (``GET /api/auth/me``,
bearer token) with no flood, then during ``--seconds`` of ``--guessers`` parallel guessers
(in their own process, so the client's GIL is not the bottleneck) against one account, then
against ``--accounts`` accounts. It prints guesses per second that were checked (401),
refusals per second (429) and the other users' p50 / p95. Loopback only; every loop is
bounded by ``--seconds``.

    .venv/bin/python scripts/bench_login_flood.py                  # SQLite
    .venv/bin/python scripts/bench_login_flood.py --db postgres    # PostgreSQL at --pg-url
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "flood-bench-password-1"
CONFIGS: dict[str, dict[str, str]] = {
    "before": {
        "DATAENGINE_LOGIN_THROTTLE": "false",
        "DATAENGINE_MAX_CONCURRENT_PASSWORD_CHECKS": "0",
    },
    "bounded": {"DATAENGINE_LOGIN_THROTTLE": "false"},
    "after": {},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from scripts.bench_common import add_database_args

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_database_args(ap)
    ap.add_argument("--guessers", type=int, default=16, help="Parallel guessing clients.")
    ap.add_argument("--accounts", type=int, default=8, help="Accounts in the spread flood.")
    ap.add_argument("--users", type=int, default=2, help="Other users measuring latency.")
    ap.add_argument("--seconds", type=float, default=4.0, help="Length of each phase.")
    ap.add_argument(
        "--configs", default="before,bounded,after", help="Comma list of: before,bounded,after."
    )
    return ap.parse_args(argv)


@contextmanager
def database(args: argparse.Namespace, work: Path) -> Iterator[str]:
    """A fresh migrated database URL (SQLite file in ``work`` or a new PostgreSQL db)."""
    from scripts.bench_common import fresh_database

    with fresh_database(args.db, args.pg_url, work, "bench_login") as url:
        yield url


def setup_users(url: str, args: argparse.Namespace) -> list[str]:
    """Victim accounts ``victim0..`` and measuring users; returns the users' bearer tokens."""
    from db.session import make_engine, make_session_factory, transaction
    from db.users import create_user, issue_token

    engine = make_engine(url)
    tokens = []
    with transaction(make_session_factory(engine)) as s:
        for i in range(max(1, args.accounts)):
            create_user(s, name=f"victim{i}", role="annotator", password=PASSWORD)
        for i in range(args.users):
            user = create_user(s, name=f"worker{i}", role="annotator", password=PASSWORD)
            tokens.append(issue_token(s, user=user, kind="api", hours=2))
    engine.dispose()
    return tokens


def reset_throttle(url: str) -> None:
    from sqlalchemy import delete

    from db.models import LoginThrottle
    from db.session import make_engine, make_session_factory, transaction

    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as s:
        s.execute(delete(LoginThrottle))
    engine.dispose()


@contextmanager
def server(url: str, work: Path, extra: dict[str, str]) -> Iterator[str]:
    """``uvicorn annotator_ui.main:app`` in a subprocess on a free loopback port."""
    from scripts.bench_common import free_port, serving

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATAENGINE_DATABASE_URL": url,
        "DATAENGINE_DATA_DIR": str(work),
        **extra,
    }
    cmd = [sys.executable, "-m", "uvicorn", "annotator_ui.main:app", "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--log-level", "warning"], env=env, cwd=work
    )
    base = f"http://127.0.0.1:{port}"
    with serving(
        proc, base, ready_path="/api/health", start_timeout_s=120, stop_timeout_s=10, poll_s=0.1
    ) as ready:
        yield ready


def _guesser(base: str, names: list[str], seconds: float, out: Any, idx: int) -> None:
    """One guessing client: wrong passwords as fast as answers come back (no back-off)."""
    import httpx

    counts = {"checked": 0, "refused": 0, "other": 0}
    end = time.monotonic() + seconds
    n = 0
    with httpx.Client(base_url=base, timeout=30) as client:
        while time.monotonic() < end:
            name = names[(idx + n) % len(names)]
            r = client.post("/api/auth/login", json={"name": name, "password": f"guess-{n}"})
            n += 1
            key = {401: "checked", 429: "refused"}.get(r.status_code, "other")
            counts[key] += 1
    out.put(counts)


def _flood_process(base: str, names: list[str], guessers: int, seconds: float, out: Any) -> None:
    """Child process: ``guessers`` threads guessing in parallel."""
    threads = [
        threading.Thread(target=_guesser, args=(base, names, seconds, out, i))
        for i in range(guessers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure_users(base: str, tokens: list[str], seconds: float) -> list[float]:
    """Latencies (ms) of GET /api/auth/me by the users, back to back, for ``seconds``."""
    import httpx

    lat: list[float] = []
    lock = threading.Lock()

    def user(token: str) -> None:
        end = time.monotonic() + seconds
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=60) as client:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                r = client.get("/api/auth/me", headers=headers)
                ms = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"user request failed: {r.status_code} {r.text}")
                with lock:
                    lat.append(ms)
                time.sleep(0.02)  # a person's page, not a load test

    threads = [threading.Thread(target=user, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat


def phase(base: str, tokens: list[str], names: list[str] | None, args: argparse.Namespace) -> dict:
    counts = {"checked": 0, "refused": 0, "other": 0}
    proc = None
    if names:
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        proc = ctx.Process(
            target=_flood_process, args=(base, names, args.guessers, args.seconds, out)
        )
        proc.start()
        time.sleep(0.3)  # let the flood ramp up before measuring
    lat = measure_users(base, tokens, args.seconds - (0.6 if names else 0))
    if proc is not None:
        for _ in range(args.guessers):
            part = out.get(timeout=120)
            for k in counts:
                counts[k] += part[k]
        proc.join(30)
    q = statistics.quantiles(lat, n=20) if len(lat) >= 2 else [float("nan")] * 19
    return {
        "checked/s": counts["checked"] / args.seconds,
        "429/s": counts["refused"] / args.seconds,
        "other": counts["other"],
        "p50": statistics.median(lat) if lat else float("nan"),  # none in time: loaded host
        "p95": q[18],
        "n": len(lat),
    }


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    args = parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        print(f"unknown config(s) {sorted(unknown)}; choose from {list(CONFIGS)}")
        return 2
    print(
        f"login flood on {args.db}: {args.guessers} guessers, {args.seconds:g} s per phase, "
        f"{args.users} other users on GET /api/auth/me, {os.cpu_count()} CPUs"
    )
    header = f"{'config':8} {'flood':22} {'checked/s':>10} {'429/s':>8} {'p50 ms':>8} {'p95 ms':>8}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bench-login-") as tmp:
        work = Path(tmp)
        with database(args, work) as url:
            tokens = setup_users(url, args)
            for config in configs:
                reset_throttle(url)
                with server(url, work, CONFIGS[config]) as base:
                    floods: list[tuple[str, list[str] | None]] = [
                        ("none", None),
                        ("one account", ["victim0"]),
                        (f"{args.accounts} accounts", [f"victim{i}" for i in range(args.accounts)]),
                    ]
                    for label, names in floods:
                        if names:
                            reset_throttle(url)
                        r = phase(base, tokens, names, args)
                        print(
                            f"{config:8} {label:22} {r['checked/s']:10.1f} {r['429/s']:8.1f} "
                            f"{r['p50']:8.1f} {r['p95']:8.1f}  other={r['other']} n={r['n']}",
                            flush=True,
                        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
