"""A learned ranker over curation decisions: which images will a curator keep?

Features per image: the quality signals, composition signals and the aesthetic score
when present (``FEATURES``; heavy-tailed ones log1p-transformed), plus a CLIP embedding
when every training image has one. Missing values are imputed with the training mean.
Model: standardisation + L2 logistic regression (scikit-learn). It is stored as plain
JSON numbers (``to_dict``/``from_dict``), never as a pickle, so it lives in
``project.settings`` and needs no file.

``score`` returns the keep logit: sort descending to order a queue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FEATURES = (
    "short_side", "aspect_ratio", "megapixels", "sharpness", "detail", "clip_shadows",
    "clip_highlights", "exposure_error", "tonal_entropy", "tonal_range", "contrast",
    "colourfulness", "noise", "blockiness", "quality", "n_masks", "subject_area",
    "masks_area", "centre_distance", "thirds_distance", "clutter", "border_contact",
    "aesthetic",
)  # fmt: skip
LOG_FEATURES = {"short_side", "megapixels", "sharpness", "detail", "colourfulness", "noise"}
MIN_EXAMPLES = 4
SCORE_PAGE = 1000  # images scored per keyset page


def feature_matrix(
    signals: Sequence[dict[str, Any]], names: Sequence[str] = FEATURES
) -> np.ndarray:
    """(N, len(names)) float64; NaN where an image lacks a signal."""
    x = np.full((len(signals), len(names)), np.nan)
    for i, s in enumerate(signals):
        for j, name in enumerate(names):
            v = s.get(name)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                x[i, j] = math.log1p(max(v, 0.0)) if name in LOG_FEATURES else float(v)
    return x


@dataclass
class RankerModel:
    """Standardise -> linear logit. ``features`` names the signal columns; ``embedding_dim``
    (0 = none) embedding columns follow them."""

    features: list[str]
    embedding_dim: int
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    n_train: int
    n_keep: int

    def _x(self, signals: Sequence[dict[str, Any]], embeddings: np.ndarray | None) -> np.ndarray:
        x = feature_matrix(signals, self.features)
        if self.embedding_dim:
            if embeddings is None:
                e = np.full((len(signals), self.embedding_dim), np.nan)
            else:
                e = np.asarray(embeddings, dtype=np.float64).reshape(len(signals), -1)
                if e.shape[1] != self.embedding_dim:
                    raise ValueError(
                        f"ranker expects {self.embedding_dim}-d embeddings, got {e.shape[1]}"
                    )
            x = np.hstack([x, e])
        return np.where(np.isnan(x), self.mean, x)

    def score(
        self, signals: Sequence[dict[str, Any]], embeddings: np.ndarray | None = None
    ) -> np.ndarray:
        """(N,) keep logits (higher = more likely kept)."""
        if not signals:
            return np.zeros(0)
        z = (self._x(signals, embeddings) - self.mean) / self.scale
        return z @ self.coef + self.intercept

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (stored in project.settings['curation']['ranker'])."""
        return {
            "features": list(self.features),
            "embedding_dim": self.embedding_dim,
            "mean": [round(float(v), 8) for v in self.mean],
            "scale": [round(float(v), 8) for v in self.scale],
            "coef": [round(float(v), 8) for v in self.coef],
            "intercept": round(float(self.intercept), 8),
            "n_train": self.n_train,
            "n_keep": self.n_keep,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankerModel:
        return cls(
            features=list(d["features"]),
            embedding_dim=int(d.get("embedding_dim", 0)),
            mean=np.asarray(d["mean"], dtype=np.float64),
            scale=np.asarray(d["scale"], dtype=np.float64),
            coef=np.asarray(d["coef"], dtype=np.float64),
            intercept=float(d["intercept"]),
            n_train=int(d.get("n_train", 0)),
            n_keep=int(d.get("n_keep", 0)),
        )


def train_ranker(
    signals: Sequence[dict[str, Any]],
    labels: Sequence[int],
    *,
    embeddings: np.ndarray | None = None,
    c: float = 1.0,
) -> RankerModel:
    """Fit on images' signal dicts and 1 (kept) / 0 (dropped) labels.

    ``embeddings``: optional (N, d) array (all rows present). Needs >= 4 examples of which
    at least one kept and one dropped, else ValueError.
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=int)
    if len(signals) != len(y):
        raise ValueError("signals and labels must have the same length")
    if len(y) < MIN_EXAMPLES or y.min() == y.max():
        raise ValueError(
            f"the ranker needs at least {MIN_EXAMPLES} decisions with both keeps and drops; "
            f"have {len(y)} ({int(y.sum())} keeps): curate more images first"
        )
    x = feature_matrix(signals)
    present = ~np.all(np.isnan(x), axis=0)  # drop columns no training image has
    names = [n for n, p in zip(FEATURES, present, strict=True) if p]
    x = x[:, present]
    dim = 0
    if embeddings is not None:
        e = np.asarray(embeddings, dtype=np.float64).reshape(len(y), -1)
        x, dim = np.hstack([x, e]), e.shape[1]
    mean = np.nanmean(x, axis=0)
    x = np.where(np.isnan(x), mean, x)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    model.fit((x - mean) / scale, y)
    return RankerModel(
        features=names,
        embedding_dim=dim,
        mean=mean,
        scale=scale,
        coef=model.coef_[0].copy(),
        intercept=float(model.intercept_[0]),
        n_train=len(y),
        n_keep=int(y.sum()),
    )


def decisions_to_find(order: Sequence[int], best: set[int]) -> int:
    """How many items a curator must look at, in ``order``, to have seen all of ``best``."""
    if not best:
        return 0
    seen = 0
    for k, item in enumerate(order, start=1):
        seen += item in best
        if seen == len(best):
            return k
    raise ValueError("order does not contain every item of best")


def expected_random_decisions(n: int, k: int) -> float:
    """Expected position of the last of ``k`` targets among ``n`` items in random order."""
    return k * (n + 1) / (k + 1)
