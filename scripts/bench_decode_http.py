"""Latency of the decode endpoint over HTTP (POST /api/images/{id}/decode), per backend.

Starts the real app under uvicorn on 127.0.0.1, in its own process as `dataengine serve`
runs it (a thread here would share the client's GIL), over a fresh SQLite file, ingests one
photo, leases it to an annotator, computes the embedding once (reported as "cold"), then
sends ``--n`` single-click prompts at random points and reports client-side p50 / p90 of
the whole HTTP round trip, next to the in-process ``segmenter.decode`` time measured in
the same run (the reference: what HTTP, JSON and RLE add). Targets (issue 4): p50 <= 50 ms
for sam vit_t with a cached embedding, <= 100 ms for classical.

Without ``--checkpoint`` the sam backend uses randomly initialised vit_t weights written to
a temporary checkpoint and read back through the normal loader (timings equal real ones).

    .venv/bin/python scripts/bench_decode_http.py --quick
    .venv/bin/python scripts/bench_decode_http.py --backend sam --n 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "samples" / "truck.jpg"
TARGET_MS = {"classical": 100.0, "sam": 50.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--backend",
        choices=["classical", "sam", "both"],
        default="both",
        help="Which backend(s) to measure (default both).",
    )
    ap.add_argument("--n", type=int, default=100, help="Timed prompts per backend (default 100).")
    ap.add_argument("--quick", action="store_true", help="20 prompts per backend.")
    ap.add_argument(
        "--image", type=Path, default=DEFAULT_IMAGE, help="Photo to decode on (default truck.jpg)."
    )
    ap.add_argument(
        "--model", default="vit_t", help="SAM model type for the sam backend (default vit_t)."
    )
    ap.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="SAM checkpoint; default: random weights of --model written to a temp file.",
    )
    ap.add_argument("--seed", type=int, default=0, help="Seed for the prompt points.")
    return ap.parse_args(argv)


def random_checkpoint(model_type: str, dest: Path) -> Path:
    """Random weights of the real architecture, saved like a downloaded checkpoint."""
    import torch

    from engine.segment.sam.models import random_sam

    path = dest / f"random_{model_type}.pth"
    torch.save(random_sam(model_type, seed=0).state_dict(), path)
    return path


def _serve_child(
    backend: str, model: str, checkpoint: Path | None, url: str, work: Path, port: int
) -> None:
    """Child process: load the model once and serve the app, as `dataengine serve` does."""
    import uvicorn

    from annotator_ui.app import create_app
    from engine.segment.registry import build_segmenter
    from engine.settings import Settings

    seg = build_segmenter(
        backend, model_type=model, checkpoint=checkpoint, cache_dir=work / "cache"
    )
    settings = Settings(database_url=url, data_dir=work, _env_file=None)  # type: ignore[call-arg]
    uvicorn.run(
        create_app(settings, segmenter=seg), host="127.0.0.1", port=port, log_level="warning"
    )


def serve(
    backend: str, model: str, checkpoint: Path | None, url: str, work: Path
) -> tuple[Any, str]:
    """Start the app in its own process (a thread here would share the client's GIL)."""
    import multiprocessing
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = multiprocessing.get_context("spawn").Process(
        target=_serve_child, args=(backend, model, checkpoint, url, work, port), daemon=True
    )
    proc.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise RuntimeError("the app process exited during start-up")
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the app did not start within 300 s")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench(backend: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import httpx

    from db.migrate import upgrade
    from db.session import make_engine, make_session_factory, transaction
    from db.users import create_user, issue_token
    from engine.imageio import load_rgb
    from engine.ingest import ingest
    from engine.segment.registry import build_segmenter

    url = f"sqlite:///{work / f'{backend}.db'}"
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    with transaction(factory) as s:
        token = issue_token(
            s, user=create_user(s, name="bench", role="annotator", password="bench-pass"), hours=2
        )
    summary = ingest(factory, project="bench", paths=[args.image])
    image_id = summary.image_ids[0]
    checkpoint = args.checkpoint
    if backend == "sam" and checkpoint is None:
        checkpoint = random_checkpoint(args.model, work)
    seg = build_segmenter(
        backend, model_type=args.model, checkpoint=checkpoint, cache_dir=work / "cache"
    )
    server, base = serve(backend, args.model, checkpoint, url, work)
    rng = np.random.default_rng(args.seed)
    n = 20 if args.quick else args.n
    try:
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=300
        ) as c:
            c.post("/api/tasks/next", json={"project_id": 1}).raise_for_status()
            h, w = load_rgb(args.image).shape[:2]
            endpoint = f"/api/images/{image_id}/decode"
            t0 = time.perf_counter()
            first = c.post(endpoint, json={"points": [[w / 2, h / 2]], "labels": [1]})
            first.raise_for_status()
            cold_ms = (time.perf_counter() - t0) * 1000
            http_ms: list[float] = []
            server_ms: list[float] = []
            for _ in range(n):
                pt = [float(rng.uniform(0, w - 1)), float(rng.uniform(0, h - 1))]
                t0 = time.perf_counter()
                r = c.post(endpoint, json={"points": [pt], "labels": [1]})
                http_ms.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                server_ms.append(r.json()["decode_ms"])
        # reference: the same decode in process, on the cached embedding
        emb = seg.embed_cached(summary_sha(factory, image_id), lambda: load_rgb(args.image))
        direct_ms = []
        for _ in range(n):
            pt = np.array([[rng.uniform(0, w - 1), rng.uniform(0, h - 1)]])
            t0 = time.perf_counter()
            seg.decode(emb, pt, np.array([1]))
            direct_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        server.terminate()
        server.join(10)
    return {
        "backend": backend if backend == "classical" else f"sam {args.model}",
        "key": backend,
        "image": f"{args.image.name} {w}x{h}",
        "n": n,
        "cold_ms": cold_ms,
        "p50": statistics.median(http_ms),
        "p90": pct(http_ms, 90),
        "server_p50": statistics.median(server_ms),
        "direct_p50": statistics.median(direct_ms),
    }


def summary_sha(factory: Any, image_id: int) -> str:
    from db.models import Image

    with factory() as s:
        return str(s.get(Image, image_id).sha256)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if not args.image.is_file():
        print(f"image not found: {args.image} (pass --image PATH)", file=sys.stderr)
        return 2
    backends = ["classical", "sam"] if args.backend == "both" else [args.backend]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_decode_http_") as tmp:
        for b in backends:
            work = Path(tmp) / b
            work.mkdir()
            try:
                rows.append(bench(b, args, work))
            except (ImportError, ModuleNotFoundError) as err:
                print(f"{b}: skipped ({err})")
    print(
        f"\n{'backend':<12} {'image':<18} {'n':>4} {'cold ms':>8} {'p50 ms':>7} {'p90 ms':>7} "
        f"{'server p50':>10} {'in-process p50':>14} {'http/in-proc':>12} {'target':>7}"
    )
    for r in rows:
        target = TARGET_MS[r["key"]]
        ok = "ok" if r["p50"] <= target else "MISSED"
        print(
            f"{r['backend']:<12} {r['image']:<18} {r['n']:>4} {r['cold_ms']:>8.0f} "
            f"{r['p50']:>7.1f} {r['p90']:>7.1f} {r['server_p50']:>10.1f} {r['direct_p50']:>14.1f} "
            f"{r['p50'] / max(r['direct_p50'], 1e-6):>11.2f}x {target:>5.0f} {ok}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
