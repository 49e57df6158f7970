"""A dense COCO instances file for any photo: SAM-like pre-fill density without SAM weights.

``dense_coco`` lays ``n`` masks over a ``width`` x ``height`` image the way SAM's automatic
mask generator covers a photo: wholes (large ellipses) holding parts (smaller ellipses
inside them), plus loose small objects, about 35-50 % of the image under some mask, and
a ``score`` per annotation in [0.80, 1.0). Each mask is a COCO RLE (compressed counts) in
full-resolution image pixels, so ``dataengine import -f coco --as-proposals`` stores it
as is. Seeded: the same arguments give the same file.

Used by ``scripts/bench_canvas.py`` and the browser tests; ``python -m
engine.interop.dense_coco PHOTO -o out.json`` writes one for a photo on disk.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from engine.masks import encode_rle, rle_area, rle_bbox


def _ellipse(
    h: int, w: int, cx: float, cy: float, rx: float, ry: float, angle: float
) -> np.ndarray:
    """HW bool ellipse centred at (cx, cy) pixels, radii (rx, ry), rotated by ``angle`` rad."""
    y0, y1 = max(int(cy - max(rx, ry)) - 1, 0), min(int(cy + max(rx, ry)) + 2, h)
    x0, x1 = max(int(cx - max(rx, ry)) - 1, 0), min(int(cx + max(rx, ry)) + 2, w)
    out = np.zeros((h, w), dtype=bool)
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    c, s = np.cos(angle), np.sin(angle)
    u, v = (dx * c + dy * s) / max(rx, 1.0), (-dx * s + dy * c) / max(ry, 1.0)
    out[y0:y1, x0:x1] = u * u + v * v <= 1.0
    return out


def dense_masks(width: int, height: int, n: int = 56, seed: int = 0) -> list[np.ndarray]:
    """``n`` HW bool masks (H = ``height``, W = ``width``): wholes, parts inside them, small
    loose objects. Every mask has at least one pixel."""
    if width < 8 or height < 8:
        raise ValueError(f"the image must be at least 8 x 8 px, got {width} x {height}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    side = min(width, height)
    masks: list[np.ndarray] = []
    n_wholes = max(1, n // 8)
    wholes: list[tuple[float, float, float, float, float]] = []
    for _ in range(n_wholes):
        rx, ry = rng.uniform(0.12, 0.22, 2) * side
        cx, cy = rng.uniform(rx, width - rx), rng.uniform(ry, height - ry)
        wholes.append((cx, cy, rx, ry, rng.uniform(0, np.pi)))
    while len(masks) < n:
        k = len(masks)
        if k < n_wholes:
            cx, cy, rx, ry, a = wholes[k]
        elif k % 3 != 0:  # a part inside a whole
            wx, wy, wrx, wry, _ = wholes[int(rng.integers(n_wholes))]
            rx, ry = rng.uniform(0.15, 0.35) * wrx, rng.uniform(0.15, 0.35) * wry
            cx = wx + rng.uniform(-0.5, 0.5) * wrx
            cy = wy + rng.uniform(-0.5, 0.5) * wry
            a = rng.uniform(0, np.pi)
        else:  # a small loose object
            rx, ry = rng.uniform(0.02, 0.06, 2) * side
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            a = rng.uniform(0, np.pi)
        m = _ellipse(height, width, cx, cy, rx, ry, a)
        if m.any():
            masks.append(m)
    return masks


def dense_coco(
    file_name: str,
    width: int,
    height: int,
    *,
    n: int = 56,
    seed: int = 0,
    labels: tuple[str, ...] = ("thing", "part", "small"),
) -> dict[str, Any]:
    """A COCO instances document with one image (``file_name``, ``width`` x ``height``) and
    ``n`` annotations from ``dense_masks``, each with an RLE ``segmentation`` and a ``score``."""
    rng = np.random.default_rng(seed + 1)
    cats = [{"id": i + 1, "name": name} for i, name in enumerate(labels)]
    anns = []
    for i, m in enumerate(dense_masks(width, height, n=n, seed=seed)):
        rle = encode_rle(m)
        anns.append(
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": cats[min(i % len(cats), len(cats) - 1)]["id"],
                "segmentation": rle,
                "area": rle_area(rle),
                "bbox": rle_bbox(rle),
                "iscrowd": 0,
                "score": round(float(rng.uniform(0.80, 0.999)), 4),
            }
        )
    return {
        "images": [{"id": 1, "file_name": file_name, "width": width, "height": height}],
        "annotations": anns,
        "categories": cats,
    }


def coverage(masks: list[np.ndarray]) -> float:
    """Fraction of the image under at least one mask."""
    union = np.zeros_like(masks[0])
    for m in masks:
        union |= m
    return float(union.mean())


def main(argv: list[str] | None = None) -> None:
    """Write ``dense_coco`` for a photo: ``python -m engine.interop.dense_coco PHOTO -o F``."""
    from engine.imageio import open_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("-n", type=int, default=56, help="number of masks (default 56)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    with open_image(args.photo) as im:
        width, height = im.size
    doc = dense_coco(args.photo.name, width, height, n=args.n, seed=args.seed)
    args.out.write_text(json.dumps(doc))
    print(f"{args.out}: {len(doc['annotations'])} masks on {width} x {height}")


if __name__ == "__main__":
    main()
