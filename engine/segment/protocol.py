"""The segmenter interface every backend implements (``docs/architecture.md``).

Two phases, as SAM: ``embed`` once per image (expensive, cacheable), then
``decode`` per prompt (cheap; ``decode_rle`` the same with the mask as COCO RLE).
``propose`` runs automatic mask generation for pre-fill.

Coordinate frames: points are ``(x, y)`` pixels of the *original* image
(float, 0 <= x < W, 0 <= y < H); boxes are XYXY pixels; masks are HW bool at
the original resolution; images are HWC uint8 RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engine.masks import RLE, encode_rle


class PromptError(ValueError):
    """A prompt is malformed: out of the image, NaN, empty, wrong shape."""


@dataclass
class Embedding:
    """What ``embed`` returns: backend-specific features plus the image geometry.

    ``features`` maps names to arrays (SAM: ``"image_embeddings"`` 1x256x64x64 fp16/fp32;
    classical: superpixels, colour features ...). ``image_size`` is (H, W) of the original.
    """

    model_key: str
    image_size: tuple[int, int]
    features: dict[str, Any]
    image: np.ndarray | None = None  # HWC uint8, kept when the backend needs pixels per prompt


@dataclass
class DecodeResult:
    """One mask for one prompt. ``logits`` is the low-res mask to feed back as ``mask_input``."""

    mask: np.ndarray  # HW bool, original resolution
    score: float  # predicted IoU (sam) or backend confidence in [0, 1]
    logits: np.ndarray | None = None  # 1x256x256 float32 (sam) or backend-specific prior


@dataclass
class Proposal:
    """One automatic proposal. ``bbox`` is COCO XYWH pixels."""

    mask: np.ndarray  # HW bool
    predicted_iou: float
    stability: float
    bbox: list[float]
    area: int
    point_coords: list[list[float]] = field(default_factory=list)
    crop_box: list[float] = field(default_factory=list)  # XYWH


@runtime_checkable
class Segmenter(Protocol):
    """A segmentation backend. Implementations: ``engine.segment.classical.segmenter``, ``engine.segment.sam.segmenter``."""

    name: str  # "classical" | "sam"
    model_key: str  # identifies weights + params; part of the embedding cache key

    def embed(self, image: np.ndarray) -> Embedding:
        """HWC uint8 RGB -> Embedding (the per-image precompute)."""
        ...

    def decode(
        self,
        embedding: Embedding,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> DecodeResult:
        """Prompt -> one mask.

        points: Nx2 float (x, y) pixels; labels: N int (1 positive, 0 negative);
        box: 4 float XYXY pixels; mask_input: a previous ``DecodeResult.logits``.
        Raises PromptError for out-of-image, NaN or empty prompts.
        """
        ...

    def decode_rle(
        self,
        embedding: Embedding,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> tuple[RLE, float, np.ndarray | None]:
        """``decode`` with the mask as COCO RLE (original resolution): (rle, score, logits).

        A backend without a cheaper path returns ``decode_as_rle(self, ...)``.
        """
        ...

    def propose(self, image: np.ndarray, embedding: Embedding | None = None) -> list[Proposal]:
        """HWC uint8 RGB -> all automatic proposals (unfiltered by confidence)."""
        ...


def decode_as_rle(
    segmenter: Segmenter,
    embedding: Embedding,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    mask_input: np.ndarray | None = None,
) -> tuple[RLE, float, np.ndarray | None]:
    """``Segmenter.decode_rle`` by way of ``decode``: the full-resolution mask, then its RLE."""
    res = segmenter.decode(embedding, points, labels, box, mask_input)
    return encode_rle(np.asarray(res.mask, bool)), res.score, res.logits


def validate_prompt(
    image_size: tuple[int, int],
    points: np.ndarray | None,
    labels: np.ndarray | None,
    box: np.ndarray | None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Check and normalise a prompt; raise PromptError with a message naming the problem.

    Returns (points Nx2 float64 | None, labels N int64 | None, box 4 float64 | None).
    """
    h, w = image_size
    if points is not None:
        points = np.asarray(points, dtype=np.float64)
        if points.size == 0:
            points = None
        elif points.ndim != 2 or points.shape[1] != 2:
            raise PromptError(f"points must be N x 2 (x, y) pixels, got shape {points.shape}")
    if points is not None:
        if labels is None:
            raise PromptError("labels are required with points (1 positive, 0 negative)")
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(labels) != len(points):
            raise PromptError(f"{len(points)} points but {len(labels)} labels")
        if not np.isin(labels, (0, 1)).all():
            raise PromptError("labels must be 0 (negative) or 1 (positive)")
        if not np.isfinite(points).all():
            raise PromptError("points contain NaN or infinity")
        if (
            (points[:, 0] < 0).any()
            or (points[:, 0] >= w).any()
            or (points[:, 1] < 0).any()
            or (points[:, 1] >= h).any()
        ):
            raise PromptError(f"points must lie inside the image: 0 <= x < {w}, 0 <= y < {h}")
    else:
        labels = None
    if box is not None:
        box = np.asarray(box, dtype=np.float64).reshape(-1)
        if box.shape != (4,):
            raise PromptError(f"box must be 4 numbers XYXY, got {box.shape}")
        if not np.isfinite(box).all():
            raise PromptError("box contains NaN or infinity")
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            raise PromptError("box must have x1 > x0 and y1 > y0 (XYXY pixels)")
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise PromptError(f"box must lie inside the image: 0..{w} x 0..{h}")
    if points is None and box is None:
        raise PromptError("empty prompt: give at least one point or a box")
    return points, labels, box
