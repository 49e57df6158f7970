"""The per-image precompute of the ``classical`` backend: a superpixel region graph.

``build_features(image, params)`` turns an HWC uint8 RGB image into plain numpy
arrays (stored in ``Embedding.features``):

=========  ==================  ====================================================
name       shape, dtype        meaning
=========  ==================  ====================================================
sp         (h, w) int32        superpixel id of each working-resolution pixel
area       (n,) float32        pixels per superpixel (working resolution)
cx, cy     (n,) float32        superpixel centroids, working-resolution pixels
hist       (n, K) float32      soft colour-palette histogram per superpixel (rows sum to 1)
border     (n,) bool           superpixel touches the image border
ei, ej     (m,) int32          adjacent superpixel pairs, ei < ej
blen       (m,) float32        shared boundary length in pixels
bgrad      (m,) float32        mean Lab colour step across the shared boundary
mdiff      (m,) float32        Lab distance between the two superpixels' mean colours
=========  ==================  ====================================================

Integer arrays (``sp``, ``ei``, ``ej``) must stay integer if an embedding cache
converts floating arrays to fp16. The working/original scale is not stored (fp16
would round it): it is ``sp.shape`` over the embedding's ``image_size``. The working resolution has at most
``params["work_max"]`` pixels on the long side.
"""

from __future__ import annotations

import heapq
from typing import Any

import cv2
import numpy as np
from skimage.segmentation import slic

FEATURE_PARAMS: dict[str, Any] = {
    "work_max": 640,  # long side of the working image, pixels
    "n_segments": 2500,  # SLIC superpixels requested
    "compactness": 10.0,  # SLIC compactness (Lab units)
    "palette": 64,  # k-means colours in the palette histograms
    "soft_k": 3,  # each pixel votes for its 3 nearest palette colours
}


def working_image(image: np.ndarray, work_max: int) -> tuple[np.ndarray, float]:
    """HWC uint8 RGB -> (resized HWC uint8 with long side <= work_max, scale)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HWC uint8 RGB, got shape {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    scale = min(1.0, work_max / max(h, w))
    if scale >= 1.0:
        return np.ascontiguousarray(image), 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _palette_hist(lab: np.ndarray, sp: np.ndarray, n: int, k: int, soft_k: int) -> np.ndarray:
    """Soft histogram (n, k) of k-means palette colours per superpixel; rows sum to 1."""
    pixels = lab.reshape(-1, 3).astype(np.float32)
    rng = np.random.default_rng(0)
    sample = pixels[rng.choice(len(pixels), min(len(pixels), 20000), replace=False)]
    k = min(k, len(sample))
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, _, centers = cv2.kmeans(sample, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    d2 = (pixels**2).sum(1, keepdims=True) - 2 * pixels @ centers.T + (centers**2).sum(1)[None]
    soft_k = min(soft_k, k)
    idx = np.argpartition(d2, soft_k - 1, axis=1)[:, :soft_k]
    dd = np.maximum(np.take_along_axis(d2, idx, 1), 0)
    dd -= dd.min(1, keepdims=True)
    sigma2 = 2 * float(np.median(np.sort(np.take_along_axis(d2, idx, 1), 1)[:, 0])) + 1.0
    weights = np.exp(-dd / sigma2)
    weights /= weights.sum(1, keepdims=True)
    rows = np.repeat(sp.ravel(), soft_k)
    hist = np.zeros((n, k), np.float64)
    np.add.at(hist, (rows, idx.ravel()), weights.ravel())
    hist /= np.maximum(hist.sum(1, keepdims=True), 1e-12)
    return hist.astype(np.float32)


def _adjacency(sp: np.ndarray, lab: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Adjacent superpixel pairs with boundary length and mean colour step across it."""
    a = np.concatenate([sp[:, :-1].ravel(), sp[:-1, :].ravel()])
    b = np.concatenate([sp[:, 1:].ravel(), sp[1:, :].ravel()])
    step = np.concatenate(
        [
            np.sqrt(((lab[:, 1:] - lab[:, :-1]) ** 2).sum(-1)).ravel(),
            np.sqrt(((lab[1:] - lab[:-1]) ** 2).sum(-1)).ravel(),
        ]
    )
    differ = a != b
    a, b, step = a[differ], b[differ], step[differ]
    key = np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b)
    uniq, inv = np.unique(key, return_inverse=True)
    blen = np.bincount(inv).astype(np.float64)
    bgrad = np.bincount(inv, step) / np.maximum(blen, 1)
    return {
        "ei": (uniq // n).astype(np.int32),
        "ej": (uniq % n).astype(np.int32),
        "blen": blen.astype(np.float32),
        "bgrad": bgrad.astype(np.float32),
    }


def build_features(image: np.ndarray, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """HWC uint8 RGB -> the region-graph arrays listed in the module docstring."""
    p = {**FEATURE_PARAMS, **(params or {})}
    small, _ = working_image(image, int(p["work_max"]))
    wh, ww = small.shape[:2]
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    sp = slic(
        small, n_segments=int(p["n_segments"]), compactness=float(p["compactness"]), start_label=0
    ).astype(np.int32)
    _, sp = np.unique(sp, return_inverse=True)  # dense ids 0..n-1
    sp = sp.reshape(wh, ww).astype(np.int32)
    n = int(sp.max()) + 1
    flat = sp.ravel()
    area = np.bincount(flat, minlength=n).astype(np.float64)
    mean = np.stack([np.bincount(flat, lab[..., c].ravel(), n) for c in range(3)], 1)
    mean /= area[:, None]
    adj = _adjacency(sp, lab, n)
    mdiff = np.sqrt(((mean[adj["ei"]] - mean[adj["ej"]]) ** 2).sum(1))
    border = np.zeros(n, bool)
    border[np.unique(np.concatenate([sp[0], sp[-1], sp[:, 0], sp[:, -1]]))] = True
    ys, xs = np.divmod(np.arange(wh * ww), ww)
    return {
        "sp": sp,
        "area": area.astype(np.float32),
        "cx": (np.bincount(flat, xs, n) / area).astype(np.float32),
        "cy": (np.bincount(flat, ys, n) / area).astype(np.float32),
        "hist": _palette_hist(lab, sp, n, int(p["palette"]), int(p["soft_k"])),
        "border": border,
        "mdiff": mdiff.astype(np.float32),
        **adj,
    }


def region_hierarchy(f: dict[str, Any]) -> list[np.ndarray]:
    """Selective-search-style greedy merging of the superpixel graph of ``build_features``.

    Adjacent regions are merged in order of similarity = palette-histogram intersection
    + size (small regions first) + fill (the merged centroid box is tight), as in Uijlings
    et al., "Selective Search for Object Recognition" (IJCV 2013). Returns one int array
    of member superpixel ids per merge (n - 1 for a connected graph), in merge order.
    """
    area = f["area"].astype(np.float64)
    n, tot = len(area), float(area.sum())
    hist = {i: h for i, h in enumerate(f["hist"].astype(np.float64) * area[:, None])}
    size = dict(enumerate(area.tolist()))
    box = {
        i: (x, y, x, y)
        for i, (x, y) in enumerate(zip(f["cx"].tolist(), f["cy"].tolist(), strict=True))
    }
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    nbr: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in zip(f["ei"].tolist(), f["ej"].tolist(), strict=True):
        nbr[a].add(b)
        nbr[b].add(a)

    def sim(a: int, b: int) -> float:
        col = float(np.minimum(hist[a] / size[a], hist[b] / size[b]).sum())
        ba, bb = box[a], box[b]
        bw = max(ba[2], bb[2]) - min(ba[0], bb[0]) + 10.0
        bh = max(ba[3], bb[3]) - min(ba[1], bb[1]) + 10.0
        both = size[a] + size[b]
        return col + (1.0 - both / tot) + (1.0 - (bw * bh - both) / tot)

    heap = [(-sim(a, b), a, b) for a, b in zip(f["ei"].tolist(), f["ej"].tolist(), strict=True)]
    heapq.heapify(heap)
    out: list[np.ndarray] = []
    nxt = n
    while heap:
        _, a, b = heapq.heappop(heap)
        if a not in members or b not in members:
            continue
        c, nxt = nxt, nxt + 1
        members[c] = members.pop(a) + members.pop(b)
        hist[c], size[c] = hist.pop(a) + hist.pop(b), size.pop(a) + size.pop(b)
        ba, bb = box.pop(a), box.pop(b)
        box[c] = (min(ba[0], bb[0]), min(ba[1], bb[1]), max(ba[2], bb[2]), max(ba[3], bb[3]))
        nb = (nbr.pop(a) | nbr.pop(b)) - {a, b}
        nbr[c] = nb
        for k in nb:
            nbr[k] -= {a, b}
            nbr[k].add(c)
            heapq.heappush(heap, (-sim(c, k), c, k))
        out.append(np.array(members[c], dtype=np.int64))
    return out
