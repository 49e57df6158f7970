"""The confident rule: which of a segmenter's proposals are pre-filled (shown) as confident.

``ConfidentRule.for_backend`` gives each backend's rule on its own score scale
(``engine.segment.registry.DEFAULT_RULES``); once a model version has a ``calibration``,
``engine.flywheel.calibration.score_proposals`` decides instead (``score``). Box NMS and
area limits apply to both. Pure: proposals in, N bool out (``engine.flywheel.prefill``
stores the flags).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from db.errors import InvalidInput
from engine.segment.protocol import Proposal


def box_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Greedy box NMS. boxes: Nx4 float XYXY pixels; scores: N. Returns kept indices
    (int64), highest score first (ties keep the earlier proposal); a box is dropped when
    its IoU with a kept one is > ``iou_thresh``.

    ``torchvision.ops.nms`` does it when torchvision is already loaded (the sam backend).
    The classical backend never loads torch, and importing torch + torchvision just for
    this costs seconds per process (measured 5-35 s here), so without it the same rule
    runs in numpy (``_box_nms_numpy``; tests check both agree on random boxes with ties).
    """
    if "torchvision" in sys.modules:
        import torch
        from torchvision.ops import nms

        if len(boxes_xyxy) == 0:
            return np.zeros(0, dtype=np.int64)
        keep = nms(
            torch.as_tensor(np.asarray(boxes_xyxy, dtype=np.float64)),
            torch.as_tensor(np.asarray(scores, dtype=np.float64)),
            float(iou_thresh),
        )
        return keep.numpy().astype(np.int64, copy=False)
    return _box_nms_numpy(boxes_xyxy, scores, iou_thresh)


def _box_nms_numpy(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """``box_nms`` without torch (same arguments, same result)."""
    n = len(boxes_xyxy)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(int(i))
        rest = order[pos + 1 :]
        rest = rest[~suppressed[rest]]
        if len(rest) == 0:
            break
        iw = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        ih = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = iw * ih
        union = area[i] + area[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        suppressed[rest[iou > iou_thresh]] = True
    return np.asarray(keep, dtype=np.int64)


@dataclass
class ConfidentRule:
    """Which proposals are pre-filled as confident (SAM paper defaults).

    A proposal is confident when it passes the score test (predicted IoU and stability
    thresholds, or the calibration's verdict), its area is within
    [``min_area`` px, ``max_area_frac`` of the image), and it survives greedy box NMS at
    ``nms_thresh`` among the proposals that passed (higher score first).
    """

    pred_iou_thresh: float = 0.88
    stability_thresh: float = 0.95
    nms_thresh: float = 0.7
    max_area_frac: float = 0.95
    min_area: int = 100

    def __post_init__(self) -> None:
        for name in ("pred_iou_thresh", "stability_thresh", "nms_thresh", "max_area_frac"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InvalidInput(f"{name} must be between 0 and 1, got {v}")
        if self.min_area < 0:
            raise InvalidInput(f"min_area must be >= 0 pixels, got {self.min_area}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_backend(cls, backend: str, **overrides: Any) -> ConfidentRule:
        """The backend's default rule (``engine.segment.registry.DEFAULT_RULES``: thresholds on
        that backend's own score scale), with ``overrides`` (fields of this class; None values
        are ignored) applied on top."""
        from engine.segment.registry import default_rule_params

        unknown = set(overrides) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidInput(f"unknown confident-rule field(s): {', '.join(sorted(unknown))}")
        params: dict[str, Any] = default_rule_params(backend)
        params.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**params)

    def apply(
        self,
        proposals: Sequence[Proposal],
        image_size: tuple[int, int],
        *,
        scores: np.ndarray | None = None,
        passed: np.ndarray | None = None,
    ) -> np.ndarray:
        """N bool: confident or not. ``image_size`` is (H, W).

        ``scores``/``passed`` (N float / N bool) replace the threshold test when a
        calibration decides; NMS then orders by ``scores``.
        """
        n = len(proposals)
        if n == 0:
            return np.zeros(0, dtype=bool)
        h, w = image_size
        iou = np.array([p.predicted_iou for p in proposals], dtype=np.float64)
        stab = np.array([p.stability for p in proposals], dtype=np.float64)
        area = np.array([p.area for p in proposals], dtype=np.float64)
        if passed is None:
            ok = (iou >= self.pred_iou_thresh) & (stab >= self.stability_thresh)
            scores = iou
        else:
            ok = np.asarray(passed, dtype=bool).copy()
            scores = iou if scores is None else np.asarray(scores, dtype=np.float64)
        ok &= (area >= self.min_area) & (area < self.max_area_frac * h * w)
        candidates = np.flatnonzero(ok)
        confident = np.zeros(n, dtype=bool)
        if len(candidates):
            xywh = np.array([proposals[i].bbox for i in candidates], dtype=np.float64)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            kept = box_nms(xyxy, scores[candidates], self.nms_thresh)
            confident[candidates[kept]] = True
        return confident


def score(
    proposals: Sequence[Proposal],
    image_size: tuple[int, int],
    rule: ConfidentRule,
    calibration: dict[str, Any] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(confident N bool, calibrated confidence N float or None)."""
    if not calibration or not proposals:
        return rule.apply(proposals, image_size), None
    from engine.flywheel.calibration import score_proposals

    confidence, passed = score_proposals(calibration, list(proposals), image_size)
    confidence = np.asarray(confidence, dtype=np.float64)
    return rule.apply(proposals, image_size, scores=confidence, passed=passed), confidence
