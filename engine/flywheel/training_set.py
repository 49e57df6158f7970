"""Calibration training set: a model version's proposals labelled by what annotators did.

Pure (plain rows in, arrays out); ``engine.flywheel.calibration_project`` reads the rows
through ``db.proposal_outcomes`` and fits ``engine.flywheel.calibration`` on the result.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.flywheel.calibration import DEFAULT_FEATURES, feature_matrix
from engine.masks import rle_iou

IMPLIED_ACCEPT_IOU = 0.85  # an unshown proposal this close to a final mask "would be accepted"
IMPLIED_KEEP_IOU = 0.5  # ... and this close "would have been fixed into" that final mask


@dataclass
class TrainingSet:
    """One row per proposal of the parent's weights on the project's finished images."""

    x: np.ndarray  # (N, F) float64 features
    y: np.ndarray  # (N,) int: accepted as-is (or, unshown, implied by the final masks)
    kept: np.ndarray  # (N,) int: became a final mask: accepted or fixed (unshown: implied)
    shown: np.ndarray  # (N,) bool: on a pre-fill-arm image, confident or revealed
    image_id: np.ndarray  # (N,) int
    prefill: np.ndarray  # (N,) bool: on a pre-fill-arm image
    names: list[str]

    def parent_kept(self) -> float | None:
        """Kept proposals the parent's rule showed, per pre-fill image, times all images
        here (the contribution a new rule must keep); None without pre-fill images."""
        n_prefill = len(np.unique(self.image_id[self.prefill]))
        if n_prefill == 0:
            return None
        per_image = float(self.kept[self.shown].sum()) / n_prefill
        return per_image * len(np.unique(self.image_id))


def empty_training_set(names: Sequence[str] = DEFAULT_FEATURES) -> TrainingSet:
    """A ``TrainingSet`` of no rows (N = 0) with ``names`` features."""
    none = np.zeros(0, dtype=np.int64)
    return TrainingSet(np.zeros((0, len(names))), none, none, none.astype(bool), none,
                       none.astype(bool), list(names))  # fmt: skip


def label_proposals(
    rows: Sequence[Any],
    *,
    revealed: Collection[int],
    finals: dict[int, list[Any]],
    implied_accept_iou: float = IMPLIED_ACCEPT_IOU,
    implied_keep_iou: float = IMPLIED_KEEP_IOU,
) -> TrainingSet:
    """Label proposal ``rows`` (``db.proposal_outcomes.proposal_rows``: image_id,
    predicted_iou, stability, area, bbox, status, confident, rle, arm, height, width).

    Shown proposals (prefill arm: confident, or less confident on an image in ``revealed``)
    carry the annotator's decision: ``accepted`` -> y 1, anything else (rejected, fixed, left)
    -> 0; kept 1 when accepted or fixed (``superseded`` by the annotator's edit). Proposals
    nobody saw (not confident, or on control-arm images) are labelled by what the annotator
    drew instead (``finals``: image id -> COCO RLEs of its accepted masks): y 1 when the
    proposal's IoU with one of them reaches ``implied_accept_iou``, kept 1 when it reaches
    ``implied_keep_iou``. Labelling the unseen ones is what lets the calibrated rule show
    *more* than the rule it replaces, not only a subset of it.
    """
    names = DEFAULT_FEATURES
    n = len(rows)
    if n == 0:
        return empty_training_set(names)
    image_id = np.array([r.image_id for r in rows], dtype=np.int64)
    prefill = np.array([r.arm == "prefill" for r in rows], dtype=bool)
    shown = np.array([bool(r.confident) or r.image_id in revealed for r in rows], dtype=bool)
    shown &= prefill
    y = np.zeros(n, dtype=np.int64)
    kept = np.zeros(n, dtype=np.int64)
    unseen: dict[int, list[int]] = {}
    for k, r in enumerate(rows):
        if shown[k]:
            y[k] = r.status == "accepted"
            kept[k] = r.status in ("accepted", "superseded")
        else:
            unseen.setdefault(r.image_id, []).append(k)
    for img, ks in unseen.items():
        if finals.get(img):
            best = rle_iou([rows[k].rle for k in ks], finals[img]).max(axis=1)
            y[ks] = best >= implied_accept_iou
            kept[ks] = best >= implied_keep_iou
    x = feature_matrix(
        names,
        np.array([r.predicted_iou or 0.0 for r in rows], dtype=np.float64),
        np.array([r.stability or 0.0 for r in rows], dtype=np.float64),
        np.array([r.area for r in rows], dtype=np.float64),
        np.array([r.bbox for r in rows], dtype=np.float64),
        np.array([[r.height, r.width] for r in rows], dtype=np.float64),
    )
    return TrainingSet(x, y, kept, shown, image_id, prefill, names)
