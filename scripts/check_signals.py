"""Degradation and near-duplicate check of the curation signals on ../shared/data photos.

1. Each signal meant to catch a degradation must score the degraded copy worse than the
   original in >= 95 % of pairs: blur -> sharpness, +-2 EV -> tonal_entropy (and
   clip_highlights for +2 EV), Gaussian noise -> noise, JPEG quality 10 -> blockiness.
   The combined ``quality`` score is checked against all five degradations, and the full
   signal x degradation table is printed for reference (most off-target cells are
   meaningless: resolution does not change under blur).
2. Near-duplicate detection (``engine.curation.duplicates``) must find resized and
   recompressed copies of each photo (recall >= 0.95) without putting two distinct photos
   in one cluster. Photos that are the same COCO image in two folders count as one photo.

    .venv/bin/python scripts/check_signals.py [--quick] [--limit N]

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from engine.curation.degrade import DEGRADATIONS, jpeg, resize
from engine.curation.duplicates import DEFAULT_RADIUS, cluster_ids, hamming_matrix
from engine.curation.signals import SIGNAL_NAMES, compute_signals
from engine.imageio import ImageRejected, load_rgb
from engine.phash import phash

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LOWER_IS_BETTER = {
    "clip_shadows",
    "clip_highlights",
    "clipping",
    "exposure_error",
    "noise",
    "blockiness",
}
TARGETS = {  # degradation -> signals that must catch it
    "blur": ["sharpness", "quality"],
    "exposure+2": ["tonal_entropy", "clip_highlights", "quality"],
    "exposure-2": ["tonal_entropy", "quality"],
    "noise": ["noise", "quality"],
    "jpeg10": ["blockiness", "quality"],
}
COPIES = {
    "resize 0.5": lambda rgb: resize(rgb, 0.5),
    "resize 1.5": lambda rgb: resize(rgb, 1.5),
    "jpeg q30": lambda rgb: jpeg(rgb, 30),
    "resize 0.35 + jpeg q50": lambda rgb: jpeg(resize(rgb, 0.35), 50),
}


def photo_files(root: Path) -> list[tuple[str, Path]]:
    """(identity, path) of the shared photos, one per distinct photo."""
    found: dict[str, Path] = {}
    globs = ["tiny-coco/*/*.jpg", "coco-mval/images/*", "grabcut/images/*", "samples/*.jpg"]
    for pattern in globs:
        for p in sorted(root.glob(pattern)):
            m = re.search(r"(\d{6,})$", p.stem)
            ident = (
                f"coco:{int(m.group(1))}"
                if "coco" in pattern and m
                else f"{p.parent.name}/{p.stem}"
            )
            found.setdefault(ident, p)
    return sorted(found.items())


def bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )


def check_degradations(photos: list[tuple[str, np.ndarray]]) -> bool:
    wins = {d: dict.fromkeys(SIGNAL_NAMES, 0) for d in DEGRADATIONS}
    with bar() as prog:
        task = prog.add_task("degradations", total=len(photos))
        for i, (_, rgb) in enumerate(photos):
            s0 = compute_signals(rgb)
            for name, fn in DEGRADATIONS.items():
                s1 = compute_signals(fn(rgb, i))
                for k in SIGNAL_NAMES:
                    wins[name][k] += s0[k] < s1[k] if k in LOWER_IS_BETTER else s0[k] > s1[k]
            prog.advance(task)
    n = len(photos)
    print(f"\nSignal ranks the degraded copy below the original (fraction of {n} pairs):")
    ok = True
    for name, signals in TARGETS.items():
        cells = []
        for k in signals:
            frac = wins[name][k] / n
            ok &= frac >= 0.95
            cells.append(f"{k} {frac:.3f}{'' if frac >= 0.95 else ' FAIL'}")
        print(f"  {name:<11} " + ", ".join(cells))
    print(
        "\nFull table (rows: signal, columns: degradation; off-target cells are informative only):"
    )
    print("  " + " " * 16 + "".join(f"{d:>12}" for d in DEGRADATIONS))
    for k in SIGNAL_NAMES:
        print(f"  {k:<16}" + "".join(f"{wins[d][k] / n:>12.2f}" for d in DEGRADATIONS))
    return ok


def check_duplicates(photos: list[tuple[str, np.ndarray]], radius: int) -> bool:
    ids: list[int] = []
    hashes: list[str] = []
    owner: list[str] = []
    kind: list[str] = []
    with bar() as prog:
        task = prog.add_task("hashing copies", total=len(photos))
        for ident, rgb in photos:
            for copy_name, fn in {"original": lambda x: x, **COPIES}.items():
                ids.append(len(ids))
                hashes.append(phash(fn(rgb)))
                owner.append(ident)
                kind.append(copy_name)
            prog.advance(task)
    clusters = cluster_ids(ids, hashes, [0.0] * len(ids), radius=radius)
    cluster_of = {m: ci for ci, c in enumerate(clusters) for m in c.members}
    original_index = {owner[i]: i for i in ids if kind[i] == "original"}
    found: dict[str, list[bool]] = {c: [] for c in COPIES}
    for i in ids:
        if kind[i] == "original":
            continue
        o = original_index[owner[i]]
        found[kind[i]].append(i in cluster_of and cluster_of.get(o) == cluster_of[i])
    merged = sum(1 for c in clusters if len({owner[m] for m in c.members}) > 1)
    originals = [i for i in ids if kind[i] == "original"]
    d = hamming_matrix([hashes[i] for i in originals]).astype(int)
    np.fill_diagonal(d, 999)
    all_found = [x for v in found.values() for x in v]
    recall = float(np.mean(all_found))
    print(f"\nNear-duplicates (phash, Hamming radius {radius}) over {len(photos)} distinct photos:")
    for c, v in found.items():
        print(f"  recall {c:<24} {np.mean(v):.3f}  ({sum(v)}/{len(v)})")
    print(f"  recall overall                  {recall:.3f}")
    print(f"  clusters merging distinct photos: {merged} of {len(clusters)}")
    print(f"  smallest Hamming distance between two distinct photos: {d.min()} bits")
    return recall >= 0.95 and merged == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=SHARED, help="The shared data folder (default ../shared/data)."
    )
    ap.add_argument("--quick", action="store_true", help="Use 30 photos (a quick smoke run).")
    ap.add_argument("--limit", type=int, default=0, help="Use at most this many photos (0 = all).")
    ap.add_argument(
        "--radius", type=int, default=DEFAULT_RADIUS, help="Hamming radius for duplicates."
    )
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"shared data not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    files = photo_files(args.data)
    limit = 30 if args.quick else args.limit
    if limit:
        step = max(1, len(files) // limit)
        files = files[::step][:limit]
    photos = []
    for ident, path in files:
        try:
            photos.append((ident, load_rgb(path)))
        except ImageRejected as err:
            print(f"skipped {path}: {err}", file=sys.stderr)
    ok = check_degradations(photos)
    ok &= check_duplicates(photos, args.radius)
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
