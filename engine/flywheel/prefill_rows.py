"""Pre-fill rows: an image's embedding for proposals, and its proposals as ``mask`` rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.masks import encode_rle_batch
from engine.segment.protocol import Embedding, Proposal

RLE_CHUNK = 32  # masks encoded per pycocotools call (bounds the NHW bool stack in memory)


def embed_image(
    segmenter: Any, sha256: str | None, image: np.ndarray, *, cache_embeddings: bool = True
) -> Embedding:
    """The image's embedding through the segmenter's cache when it has one: read (and with
    ``cache_embeddings`` written) under the file's sha256. Without writing, a fresh embedding
    still gets the cache's fp16 round trip, so proposals do not depend on the cache."""
    cache = getattr(segmenter, "cache", None)
    if not sha256 or not hasattr(segmenter, "embed_cached"):
        return segmenter.embed(image)
    if cache_embeddings or cache is None:
        return segmenter.embed_cached(sha256, lambda: image)
    hit = cache.get(sha256)
    if hit is not None:
        return hit
    from engine.segment.embedding_cache import roundtrip

    return roundtrip(sha256, segmenter.inner.embed(image))


def mask_rows(
    proposals: Sequence[Proposal],
    confident: np.ndarray,
    calibrated: np.ndarray | None,
    *,
    image_id: int,
    image_size: tuple[int, int],
    model_version_id: int,
    round_id: int | None,
) -> list[dict[str, Any]]:
    """``mask`` table rows (source ``model``, status ``proposed``) of one image's
    ``proposals``: COCO RLE, XYWH bbox, scores, the N bool ``confident`` flags and the N
    float ``calibrated`` confidences (None: no calibration). Each proposal's mask must be
    ``image_size`` (H, W), else ValueError."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(proposals), RLE_CHUNK):
        chunk = proposals[start : start + RLE_CHUNK]
        for p in chunk:
            if p.mask.shape != image_size:
                raise ValueError(f"backend returned a {p.mask.shape} mask for a {image_size} image")
        rles = encode_rle_batch(np.stack([np.asarray(p.mask, dtype=bool) for p in chunk]))
        for j, (p, rle) in enumerate(zip(chunk, rles, strict=True)):
            i = start + j
            rows.append(
                {
                    "image_id": image_id,
                    "rle": rle,
                    "bbox": [float(v) for v in p.bbox],
                    "area": int(p.area),
                    "source": "model",
                    "status": "proposed",
                    "model_version_id": model_version_id,
                    "round_id": round_id,
                    "predicted_iou": float(p.predicted_iou),
                    "stability": float(p.stability),
                    "calibrated_confidence": None if calibrated is None else float(calibrated[i]),
                    "confident": bool(confident[i]),
                    "point_coords": [[float(x), float(y)] for x, y in p.point_coords] or None,
                    "crop_box": [float(v) for v in p.crop_box] or None,
                    "meta": {},
                }
            )
    return rows
