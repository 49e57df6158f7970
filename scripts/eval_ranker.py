"""How many decisions does the ranker's order need to find the K best images, against random order?

Two data sets, each printed as "ranked order: N decisions, random order: M (expected)":

1. ``../shared/data/aesthetic/sac-demo``: 20 generated images that a person sorted into
   bad / mediocre / good / great. Leave-one-out: the ranker is trained on the other 19
   images' keep (good, great) / drop labels and scores the held-out one; the K best are the
   "great" images. Signals only (no CLIP weights exist here), so this is a hard case.
2. Synthetic degradations of ``../shared/data/tiny-coco`` photos: originals are "kept",
   their degraded copies (blur, +-2 EV, noise, JPEG q10) "dropped". The ranker trains on
   half of the photos and orders the pool of the other half; the K best are the originals.

    .venv/bin/python scripts/eval_ranker.py [--quick] [--plot ranker.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from engine.curation.degrade import DEGRADATIONS
from engine.curation.ranker import decisions_to_find, expected_random_decisions, train_ranker
from engine.curation.signals import compute_signals
from engine.imageio import load_rgb

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BUCKETS = ("bad", "mediocre", "good", "great")


def random_decisions(n: int, best: set[int], rng: np.random.Generator, trials: int = 2000) -> float:
    return float(
        np.mean([decisions_to_find(rng.permutation(n).tolist(), best) for _ in range(trials)])
    )


def report(
    name: str, scores: np.ndarray, best: set[int], rng: np.random.Generator
) -> dict[str, object]:
    """Print decisions needed (ranked vs random) to find all K best, and the first quarter,
    half and three quarters of them."""
    order = np.argsort(-scores, kind="stable").tolist()
    n, k = len(scores), len(best)
    ranked = decisions_to_find(order, best)
    rand = random_decisions(n, best, rng)
    print(f"{name}: N={n} images, K={k} best")
    print(f"  ranked order: {ranked} decisions to find all {k} best")
    print(f"  random order: {rand:.1f} decisions (expected {expected_random_decisions(n, k):.1f})")
    found = np.cumsum([i in best for i in order])
    for frac in (0.25, 0.5, 0.75):
        j = max(1, round(frac * k))
        at = int(np.argmax(found >= j)) + 1
        print(
            f"  first {j:>3} of the best: ranked {at:>4} decisions, random {j * (n + 1) / (k + 1):6.1f} (expected)"
        )
    return {"name": name, "found": found, "n": n, "k": k}


def sac_demo(root: Path, rng: np.random.Generator) -> dict[str, object] | None:
    folder = root / "aesthetic" / "sac-demo" / "demo_images"
    if not folder.is_dir():
        print(f"skipped sac-demo: {folder} not found")
        return None
    sig, bucket = [], []
    for b, name in enumerate(BUCKETS):
        for p in sorted((folder / name).glob("*.png")):
            sig.append(compute_signals(load_rgb(p)))
            bucket.append(b)
    y = np.array([int(b >= 2) for b in bucket])
    scores = np.zeros(len(sig))
    for i in range(len(sig)):  # leave one out
        train = [j for j in range(len(sig)) if j != i]
        model = train_ranker([sig[j] for j in train], y[train].tolist())
        scores[i] = model.score([sig[i]])[0]
    out = report(
        "sac-demo (leave-one-out, K = 'great')",
        scores,
        {i for i, b in enumerate(bucket) if b == 3},
        rng,
    )
    report(
        "sac-demo (leave-one-out, K = 'good' or 'great')",
        scores,
        {i for i, b in enumerate(bucket) if b >= 2},
        rng,
    )
    return out


def synthetic(root: Path, n_photos: int, rng: np.random.Generator) -> dict[str, object]:
    paths = sorted((root / "tiny-coco").glob("*/*.jpg"))[:n_photos]
    rows: list[tuple[int, dict[str, float], int]] = []  # (photo, signals, kept)
    for k, p in enumerate(paths):
        rgb = load_rgb(p)
        rows.append((k, compute_signals(rgb), 1))
        for fn in DEGRADATIONS.values():
            rows.append((k, compute_signals(fn(rgb, k)), 0))
        print(f"\r  signals: {k + 1}/{len(paths)} photos", end="", file=sys.stderr)
    print(file=sys.stderr)
    half = len(paths) // 2
    train = [r for r in rows if r[0] < half]
    test = [r for r in rows if r[0] >= half]
    model = train_ranker([r[1] for r in train], [r[2] for r in train])
    scores = model.score([r[1] for r in test])
    best = {i for i, r in enumerate(test) if r[2] == 1}
    return report(
        f"synthetic degradations (train {half} photos, test pool of {len(paths) - half} originals + degraded copies)",
        scores,
        best,
        rng,
    )


def plot(results: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4))
    for ax, r in zip(np.atleast_1d(axes), results, strict=True):
        n, k = int(r["n"]), int(r["k"])  # type: ignore[call-overload]
        x = np.arange(1, n + 1)
        ax.plot(x, r["found"], label="ranked order")
        ax.plot(x, x * k / n, "--", label="random order (expected)")
        ax.set_xlabel("decisions")
        ax.set_ylabel("best images found")
        ax.set_title(str(r["name"])[:48], fontsize=9)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=SHARED, help="The shared data folder (default ../shared/data)."
    )
    ap.add_argument(
        "--photos",
        type=int,
        default=60,
        help="tiny-coco photos for the synthetic set (default 60).",
    )
    ap.add_argument("--quick", action="store_true", help="Use 20 photos for the synthetic set.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the random orders.")
    ap.add_argument(
        "--plot", type=Path, default=None, help="Write a found-vs-decisions plot (PNG) here."
    )
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"shared data not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    results = [
        r
        for r in (
            sac_demo(args.data, rng),
            synthetic(args.data, 20 if args.quick else args.photos, rng),
        )
        if r
    ]
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
