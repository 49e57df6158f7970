"""Click-to-mask latency (embedding already computed): sam vit_t ours vs SamPredictor, classical.

For each photo the embedding is computed once (not timed). Then ``--n`` prompts are timed:
alternately a single positive click (multimask output, best mask chosen) and a follow-up
with a second click plus the previous low-res logits as ``mask_input``. The reference is
``SamPredictor.predict`` on the same weights with the image set once, doing the same
selection; ours is ``SamSegmenter.decode``. Both return a full-resolution bool mask.

Without ``--checkpoint`` vit_t has seeded random weights (timings equal real ones).

    .venv/bin/python scripts/bench_decode.py --quick
    .venv/bin/python scripts/bench_decode.py --n 200 --json decode.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from engine.imageio import load_rgb
from engine.segment.sam.models import file_sha256, load_checkpoint, random_sam
from engine.segment.sam.segmenter import SamSegmenter

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "samples"
console = Console()


def prompts(shape: tuple[int, int], n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """n (points Nx2 xy, labels N) prompts: odd ones are two-click follow-ups."""
    rng = np.random.default_rng(seed)
    h, w = shape
    out = []
    for i in range(n):
        k = 1 if i % 2 == 0 else 2
        pts = np.stack([rng.uniform(0, w - 1, k), rng.uniform(0, h - 1, k)], axis=1)
        labels = np.array([1]) if k == 1 else np.array([1, rng.integers(0, 2)])
        out.append((pts, labels))
    return out


def run_clicks(
    decode: Callable[[np.ndarray, np.ndarray, Any], Any], plist: list[tuple[np.ndarray, np.ndarray]]
) -> list[float]:
    """Time each prompt; follow-ups get the previous call's logits as mask_input."""
    times, prev = [], None
    for pts, labels in plist:
        mask_in = prev if len(pts) > 1 else None
        t0 = time.perf_counter()
        prev = decode(pts, labels, mask_in)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def bench_sam(
    images: list[np.ndarray], model: torch.nn.Module, sha: str, n: int, seed: int
) -> dict[str, list[float]]:
    from segment_anything import SamPredictor

    seg = SamSegmenter(model_type="vit_t", model=model, sha256=sha)
    pred = SamPredictor(model)
    ours, ref = [], []
    for idx, img in enumerate(images):
        emb = seg.embed(img)
        pred.set_image(img)
        plist = prompts(img.shape[:2], n, seed + idx)

        def ours_fn(p: np.ndarray, lab: np.ndarray, m: Any, emb: Any = emb) -> Any:
            return seg.decode(emb, points=p, labels=lab, mask_input=m).logits

        def ref_fn(p: np.ndarray, lab: np.ndarray, m: Any) -> Any:
            multi = m is None and len(p) == 1
            masks, scores, logits = pred.predict(
                point_coords=p, point_labels=lab, mask_input=m, multimask_output=multi
            )
            best = int(np.argmax(scores))
            _ = masks[best]
            return logits[best : best + 1]

        run_clicks(ours_fn, plist[:2])  # warm-up (context precompute, allocator)
        run_clicks(ref_fn, plist[:2])
        ours += run_clicks(ours_fn, plist)
        ref += run_clicks(ref_fn, plist)
    return {"sam vit_t (ours)": ours, "sam vit_t (SamPredictor)": ref}


def bench_classical(images: list[np.ndarray], n: int, seed: int) -> dict[str, list[float]]:
    try:
        from engine.segment.classical.segmenter import ClassicalSegmenter
    except ImportError:
        return {}
    seg = ClassicalSegmenter()
    times: list[float] = []
    for idx, img in enumerate(images):
        emb = seg.embed(img)

        def fn(p: np.ndarray, lab: np.ndarray, m: Any, emb: Any = emb) -> Any:
            return seg.decode(emb, points=p, labels=lab, mask_input=m).logits

        plist = prompts(img.shape[:2], n, seed + idx)
        run_clicks(fn, plist[:2])
        times += run_clicks(fn, plist)
    return {"classical": times}


# ---------------------------------------------------------------------------------------
# HTTP: the app's decode endpoint (POST /api/images/{id}/decode) is measured end to end by
# scripts/bench_decode_http.py (uvicorn + a real database). Add its numbers here with
# ``bench_http(...) -> {"name": [ms, ...]}`` if one table is wanted; kept separate so this
# script stays free of the web app and the database.
# ---------------------------------------------------------------------------------------


def summarise(results: dict[str, list[float]]) -> list[dict[str, Any]]:
    rows = []
    for name, t in results.items():
        rows.append(
            {
                "backend": name,
                "n": len(t),
                "p50_ms": float(np.percentile(t, 50)),
                "p95_ms": float(np.percentile(t, 95)),
                "mean_ms": float(np.mean(t)),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--images",
        default="truck.jpg,dog.jpg,groceries.jpg",
        help="comma-separated file names in --samples",
    )
    ap.add_argument("--samples", type=Path, default=SAMPLES, help="folder of photos")
    ap.add_argument("--n", type=int, default=60, help="timed prompts per photo and backend")
    ap.add_argument("--quick", action="store_true", help="one photo, 20 prompts")
    ap.add_argument("--checkpoint", type=Path, help="a real vit_t checkpoint (default: random)")
    ap.add_argument("--no-classical", action="store_true", help="skip the classical backend")
    ap.add_argument("--seed", type=int, default=0, help="seed for the click positions")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.images.split(",")
    if args.quick:
        names, args.n = names[:1], 20
    images = [load_rgb(args.samples / n) for n in names]
    if args.checkpoint:
        sha = file_sha256(args.checkpoint)
        model = load_checkpoint("vit_t", args.checkpoint, sha256=sha)
    else:
        model, sha = random_sam("vit_t", seed=0), "random-seed-0"
    results = bench_sam(images, model, sha, args.n, args.seed)
    if not args.no_classical:
        results.update(bench_classical(images, args.n, args.seed))
    rows = summarise(results)
    ref = next(r for r in rows if "SamPredictor" in r["backend"])
    table = Table(
        title=f"click-to-mask latency, embedding cached, {len(images)} photo(s), "
        f"{args.threads} threads"
    )
    for col in ("backend", "n", "p50 ms", "p95 ms", "p50 vs SamPredictor"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["backend"],
            str(r["n"]),
            f"{r['p50_ms']:.1f}",
            f"{r['p95_ms']:.1f}",
            f"{ref['p50_ms'] / r['p50_ms']:.2f}x faster",
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"images": names, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
