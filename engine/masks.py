"""Mask codecs and geometry. Masks are HW bool arrays in full-resolution image pixels.

COCO RLE here is always the JSON-safe form ``{"size": [h, w], "counts": str}``
(pycocotools' compressed counts decoded to ASCII). Boxes are COCO XYWH pixels
unless a name says ``xyxy``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict[str, Any]


def encode_rle(mask: np.ndarray) -> RLE:
    """HW bool/uint8 mask -> COCO RLE with ``counts`` as str."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": rle["counts"].decode("ascii"),
    }


def encode_rle_batch(masks: np.ndarray) -> list[RLE]:
    """NHW bool masks -> list of COCO RLE (one pycocotools call)."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be 3-D (N, H, W), got shape {masks.shape}")
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [
        {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
        for r in rles
    ]


def _to_coco(rle: RLE) -> dict[str, Any]:
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        return mask_utils.frPyObjects(rle, rle["size"][0], rle["size"][1])
    return {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


def decode_rle(rle: RLE) -> np.ndarray:
    """COCO RLE (compressed str/bytes or uncompressed list counts) -> HW bool mask."""
    try:
        return mask_utils.decode(_to_coco(rle)).astype(bool)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"not a valid COCO RLE: {err}") from err


def rle_area(rle: RLE) -> int:
    return int(mask_utils.area(_to_coco(rle)))


def rle_bbox(rle: RLE) -> list[float]:
    """COCO XYWH box of an RLE."""
    return [float(v) for v in mask_utils.toBbox(_to_coco(rle))]


def rle_iou(a: list[RLE], b: list[RLE]) -> np.ndarray:
    """Pairwise IoU matrix (len(a), len(b)) between RLE lists (non-crowd)."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(
        mask_utils.iou([_to_coco(r) for r in a], [_to_coco(r) for r in b], [0] * len(b))
    ).reshape(len(a), len(b))


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO XYWH box of a HW bool mask; [0,0,0,0] when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]


def mask_iou(a: np.ndarray, b: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """IoU of two HW bool masks; pixels where ``ignore`` is True do not count.

    Two empty masks have IoU 1.0.
    """
    if ignore is not None:
        keep = ~ignore
        a, b = a & keep, b & keep
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(a & b) / union)


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons ([[x0, y0, x1, y1, ...], ...], pixels) -> HW bool mask, as pycocotools rasterises."""
    rles = mask_utils.frPyObjects(polygons, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
