"""The RITM click simulator and the interactive-segmentation loop (NoC protocol).

Protocol (Sofiiuk et al., "Reviving Iterative Training with Mask Guidance for
Interactive Segmentation", 2021, ``isegm/inference/clicker.py``): the next click
goes to the error pixel farthest from any non-error pixel (L2 distance
transform of the false-negative and false-positive masks, each padded by one
pixel of zeros so the image border counts as a boundary); it is positive when
the deepest error is a miss (false negative) and negative when it is a false
alarm (false positive). Pixels marked ``ignore`` (GrabCut's 128 band) are never
errors and never count in IoU. Pixels already clicked are never clicked again.

Public API (stable; the flywheel simulator imports it):

- ``next_click(gt, pred, ignore=None, not_clicked=None) -> (x, y, is_positive)``
- ``run_clicks(segmenter, embedding, gt, ignore, ...) -> list[(iou, latency_s)]``
- ``noc(ious, threshold, max_clicks) -> int``
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from engine.masks import mask_iou
from engine.segment.protocol import Embedding, Segmenter


def _padded_dt(mask: np.ndarray) -> np.ndarray:
    """L2 distance to the nearest non-mask pixel, the image border counting as non-mask."""
    padded = np.pad(mask.astype(np.uint8), 1, mode="constant")
    return cv2.distanceTransform(padded, cv2.DIST_L2, 0)[1:-1, 1:-1]


def next_click(
    gt: np.ndarray,
    pred: np.ndarray,
    ignore: np.ndarray | None = None,
    not_clicked: np.ndarray | None = None,
) -> tuple[float, float, bool]:
    """Where the RITM clicker clicks next.

    gt, pred: HW bool (ground truth, current prediction), same shape.
    ignore: HW bool or None; True pixels are never errors.
    not_clicked: HW bool or None; False pixels (earlier clicks) are never chosen.
    Returns (x, y, is_positive) in pixel coordinates of ``gt`` (integers as floats).
    When the prediction has no error left, returns the deepest pixel of the larger
    of the object / background as a harmless confirming click.
    """
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} must have the same shape")
    valid = np.ones_like(gt) if ignore is None else ~np.asarray(ignore, dtype=bool)
    fn = gt & ~pred & valid
    fp = ~gt & pred & valid
    fn_dt = _padded_dt(fn)
    fp_dt = _padded_dt(fp)
    if not_clicked is not None:
        fn_dt *= not_clicked
        fp_dt *= not_clicked
    fn_max, fp_max = float(fn_dt.max()), float(fp_dt.max())
    if fn_max == 0 and fp_max == 0:  # nothing left to fix: confirm the object
        dt = _padded_dt(gt & valid)
        ys, xs = np.nonzero(dt == dt.max())
        return float(xs[0]), float(ys[0]), True
    is_positive = fn_max > fp_max
    dt, best = (fn_dt, fn_max) if is_positive else (fp_dt, fp_max)
    ys, xs = np.nonzero(dt == best)
    return float(xs[0]), float(ys[0]), bool(is_positive)


def run_clicks(
    segmenter: Segmenter,
    embedding: Embedding,
    gt: np.ndarray,
    ignore: np.ndarray | None = None,
    max_clicks: int = 20,
    target_iou: float | None = 0.90,
    use_prev_mask: bool = True,
    min_clicks: int = 1,
) -> list[tuple[float, float]]:
    """Simulate one annotator session on one object with the RITM clicker.

    gt: HW bool ground truth at the embedding's original resolution; ignore: HW bool or None.
    Each click is appended to the accumulated points/labels and ``segmenter.decode`` is
    called with all of them; with ``use_prev_mask`` the previous ``DecodeResult.logits``
    are fed back as ``mask_input``. Stops after ``max_clicks`` clicks, or once IoU has
    reached ``target_iou`` and at least ``min_clicks`` were made (None: always run
    ``max_clicks``; use ``min_clicks=5`` to keep mIoU@1..5 exact while stopping early).
    Returns one (iou, latency_s) per click; latency is the wall time of ``decode``.
    """
    h, w = embedding.image_size
    gt = np.asarray(gt, dtype=bool)
    if gt.shape != (h, w):
        raise ValueError(f"gt shape {gt.shape} does not match the image size {(h, w)}")
    pred = np.zeros((h, w), dtype=bool)
    not_clicked = np.ones((h, w), dtype=bool)
    points: list[tuple[float, float]] = []
    labels: list[int] = []
    logits = None
    out: list[tuple[float, float]] = []
    for _ in range(max_clicks):
        x, y, positive = next_click(gt, pred, ignore, not_clicked)
        not_clicked[int(y), int(x)] = False
        points.append((x, y))
        labels.append(1 if positive else 0)
        t0 = time.perf_counter()
        res = segmenter.decode(
            embedding,
            points=np.asarray(points, dtype=np.float64),
            labels=np.asarray(labels, dtype=np.int64),
            mask_input=logits if use_prev_mask else None,
        )
        latency = time.perf_counter() - t0
        logits = res.logits
        pred = np.asarray(res.mask, dtype=bool)
        iou = mask_iou(pred, gt, ignore)
        out.append((iou, latency))
        if (
            target_iou is not None
            and len(out) >= min_clicks
            and max(o[0] for o in out) >= target_iou
        ):
            break
    return out


def noc(ious: list[float], threshold: float, max_clicks: int = 20) -> int:
    """Number of clicks to first reach ``threshold`` IoU; ``max_clicks`` when never reached."""
    for i, iou in enumerate(ious[:max_clicks]):
        if iou >= threshold:
            return i + 1
    return max_clicks
