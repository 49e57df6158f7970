"""Composition signals from an image's ACCEPTED masks (COCO RLE, full-resolution pixels).

The *subject* is the largest accepted mask. All positions are fractions of the image
(x / width, y / height); distances are fractions of the image diagonal.

Signals (all floats, JSON-safe; empty dict when the image has no accepted mask):
- ``n_masks``: number of accepted masks.
- ``subject_area``: subject pixels / image pixels (0..1).
- ``masks_area``: union of all accepted masks / image pixels (0..1).
- ``subject_cx``, ``subject_cy``: subject centroid, 0..1.
- ``centre_distance``: centroid to image centre / half diagonal (0 = centred, 1 = corner).
- ``thirds_distance``: centroid to the nearest rule-of-thirds intersection / half diagonal.
- ``clutter``: Shannon entropy (bits) of the masks' area shares; 0 for one dominant object,
  log2(n) for n equal objects. Higher means busier.
- ``border_contact``: fraction of the image border's pixels covered by the subject (0..1);
  a subject cut by the frame touches the border.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.masks import decode_rle

THIRDS = [(x, y) for x in (1 / 3, 2 / 3) for y in (1 / 3, 2 / 3)]


def composition_signals(rles: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Composition of one image from its accepted masks' COCO RLEs (same ``size`` each)."""
    if not rles:
        return {}
    masks = [decode_rle(r).astype(bool) for r in rles]
    h, w = masks[0].shape
    if any(m.shape != (h, w) for m in masks):
        raise ValueError("all masks of an image must have the same size (COCO RLE 'size')")
    areas = np.array([int(m.sum()) for m in masks], dtype=np.float64)
    subject = masks[int(np.argmax(areas))]
    union = np.zeros((h, w), dtype=bool)
    for m in masks:
        union |= m
    total = float(h * w)
    out: dict[str, float] = {
        "n_masks": float(len(masks)),
        "subject_area": float(areas.max()) / total,
        "masks_area": float(union.sum()) / total,
    }
    ys, xs = np.nonzero(subject)
    if len(xs) == 0:
        cx = cy = 0.5
    else:
        cx, cy = (float(xs.mean()) + 0.5) / w, (float(ys.mean()) + 0.5) / h
    half_diag = math.hypot(0.5, 0.5)
    out["subject_cx"], out["subject_cy"] = cx, cy
    out["centre_distance"] = math.hypot(cx - 0.5, cy - 0.5) / half_diag
    out["thirds_distance"] = min(math.hypot(cx - tx, cy - ty) for tx, ty in THIRDS) / half_diag
    shares = areas[areas > 0] / areas[areas > 0].sum() if areas.sum() > 0 else np.array([1.0])
    out["clutter"] = float(-(shares * np.log2(shares)).sum()) + 0.0
    border = np.concatenate([subject[0, :], subject[-1, :], subject[1:-1, 0], subject[1:-1, -1]])
    out["border_contact"] = float(border.mean()) if border.size else 0.0
    return {k: round(v, 6) for k, v in out.items()}
