"""A prompt on the classical backend's region graph: clicks, box and ``mask_input`` as
superpixels (``f`` is an ``Embedding.features`` of ``engine.segment.classical.features``)."""

from __future__ import annotations

import cv2
import numpy as np

from engine.segment.protocol import PromptError


def scales(f: dict, image_size: tuple[int, int]) -> tuple[float, float]:
    """(x, y) factors from original pixels to working-resolution pixels."""
    wh, ww = f["sp"].shape
    return ww / image_size[1], wh / image_size[0]


def click_nodes(
    f: dict, image_size: tuple[int, int], points: np.ndarray | None, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Superpixels under positive / negative clicks; a later click wins a tie."""
    if points is None or labels is None:
        return np.zeros(0, int), np.zeros(0, int)
    sp = f["sp"]
    sx, sy = scales(f, image_size)
    xi = np.clip((points[:, 0] * sx).astype(int), 0, sp.shape[1] - 1)
    yi = np.clip((points[:, 1] * sy).astype(int), 0, sp.shape[0] - 1)
    nodes = sp[yi, xi]
    last: dict[int, int] = {}
    for node, lab in zip(nodes.tolist(), labels.tolist(), strict=True):
        last[node] = lab
    pos = np.array([k for k, v in last.items() if v == 1], dtype=int)
    neg = np.array([k for k, v in last.items() if v == 0], dtype=int)
    return pos, neg


def box_nodes(f: dict, image_size: tuple[int, int], box: np.ndarray | None) -> np.ndarray | None:
    """Superpixels whose centre lies in the box (XYXY pixels) -> n bool, or None without one."""
    if box is None:
        return None
    sx, sy = scales(f, image_size)
    x0, y0, x1, y1 = box * np.array([sx, sy, sx, sy])
    inbox = (f["cx"] >= x0) & (f["cx"] < x1) & (f["cy"] >= y0) & (f["cy"] < y1)
    if not inbox.any():  # box thinner than a superpixel: take the one under its centre
        sp = f["sp"]
        cy = min(int((y0 + y1) / 2), sp.shape[0] - 1)
        cx = min(int((x0 + x1) / 2), sp.shape[1] - 1)
        inbox[sp[cy, cx]] = True
    return inbox


def mask_prior(f: dict, mask_input: np.ndarray | None) -> np.ndarray | None:
    """mask_input -> per-superpixel bool (object) or None."""
    if mask_input is None:
        return None
    m = np.asarray(mask_input, dtype=np.float32)
    n = len(f["area"])
    if m.ndim == 1:
        if m.shape != (n,):
            raise PromptError(
                f"mask_input has {m.shape[0]} values; this embedding has {n} superpixels"
            )
        return m > 0
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2 or min(m.shape) < 1 or not np.isfinite(m).all():
        raise PromptError("mask_input must be this backend's logits or a finite 2-D map")
    sp = f["sp"]
    m = cv2.resize(m, (sp.shape[1], sp.shape[0]), interpolation=cv2.INTER_LINEAR)
    mean = np.bincount(sp.ravel(), m.ravel(), n) / f["area"]
    return mean > 0
