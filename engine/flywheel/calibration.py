"""Flywheel step 1: "confident" becomes a measured precision.

Fit P(accept as-is | proposal features) with scikit-learn logistic regression on every
proposal of finished images: shown ones (confident ``model`` masks in the pre-fill arm)
carry the human decision (``accepted`` -> 1; ``rejected``, ``superseded`` (fixed) or left
undecided -> 0); unshown ones (not confident, or control arm) are labelled by what the
annotator drew instead (1 when a final mask overlaps them at IoU >= 0.85), see
``training_set``.

Accepts are rare while a pre-fill model is weak (a few per hundred proposals), too few to
learn a ranking from. So the features are first ranked by a logistic model of the denser
"kept" label (the proposal became a final mask: accepted, or fixed; unshown: IoU >= 0.5
with a final mask), and that score is then mapped to P(accept) by a one-dimensional
logistic fit on the accepts (Platt scaling). Both are logistic, so the result is one
logistic model of the features. Without kept labels (or when the kept score does not
order the accepts) the model is fitted on the accepts directly; ``ranked_on`` records which.

Then choose the lowest probability threshold whose precision on cross-validated
predictions reaches the target (default 0.90): the most pre-fill at that precision.
When the target is out of reach (weak proposals, few accepts), a fallback chooses, in
this order of preference (``calibration_project.calibrate_project`` passes what the
project has measured):

- ``contribution``: the fewest, most confident proposals whose held-out kept count, less
  one Poisson standard deviation, still reaches what the parent's rule contributed on the
  same images: the most precise pre-fill that keeps the parent's contribution;
- ``net_seconds``: the threshold that saves the annotator the most time on held-out
  predictions, from the project's measured seconds per human-added mask;
- ``precision_lift``: the largest shown set at ``FALLBACK_LIFT`` x the parent's precision.

``target_met`` and ``fallback_rule`` record which rule chose. A threshold of ``NEVER`` (2.0)
shows nothing: no threshold saves time.

The result is a plain dict stored in ``model_version.calibration`` of a NEW child model
version (same backend and weights, ``parent_id`` = the version whose proposals were judged;
``engine.flywheel.calibration_project`` gathers the decisions and registers it)::

    {"kind": "logistic", "features": [...], "coef": [...], "intercept": float,
     "threshold": float, "target_precision": float, "target_met": bool, "n": int,
     "n_positive": int, "n_kept": int | None, "ranked_on": "kept" | "accepted",
     "n_shown": int, "fitted_precision": float, "fitted_recall": float,
     "fallback_rule": "contribution" | "net_seconds" | "precision_lift" | None,
     "base_kept": float | None, "gain_s": float | None,
     "reject_s": float, "fallback_precision": float | None,
     "support_lo": [...], "support_hi": [...]}

Older dicts without the newer keys still score. ``support_lo/hi`` are per-feature min/max
of the labelled proposals: a proposal outside that box is never confident, because the
logistic model has seen no decision there and would extrapolate.

``coef`` apply to the raw features (standardisation is folded in), so scoring needs only
numpy: ``p = 1 / (1 + exp(-(X @ coef + intercept)))``; confident = ``p >= threshold``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from db.errors import InvalidInput
from engine.segment.protocol import Proposal

# name -> f(predicted_iou, stability, area, bbox XYWH (N,4), H, W) -> (N,) float64
Feature = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float], np.ndarray]


def _border(b: np.ndarray, h: float, w: float) -> np.ndarray:
    touch = (
        (b[:, 0] <= 1).astype(float)
        + (b[:, 1] <= 1)
        + (b[:, 0] + b[:, 2] >= w - 1)
        + (b[:, 1] + b[:, 3] >= h - 1)
    )
    return touch / 4.0


FEATURES: dict[str, Feature] = {
    "predicted_iou": lambda iou, st, a, b, h, w: iou,
    "stability": lambda iou, st, a, b, h, w: st,
    "log_area_frac": lambda iou, st, a, b, h, w: np.log10(np.maximum(a / (h * w), 1e-6)),
    "abs_log_aspect": lambda iou, st, a, b, h, w: np.abs(
        np.log(np.maximum(b[:, 2], 1.0) / np.maximum(b[:, 3], 1.0))
    ),
    "border_contact": lambda iou, st, a, b, h, w: _border(b, h, w),
    "bbox_fill": lambda iou, st, a, b, h, w: a / np.maximum(b[:, 2] * b[:, 3], 1.0),
}
DEFAULT_FEATURES = list(FEATURES)
MIN_SAMPLES = 20
NEVER = 2.0  # a threshold no probability reaches: show nothing
FALLBACK_LIFT = 2.0  # target unreachable: demand this multiple of the parent's precision


def feature_matrix(
    names: Sequence[str],
    predicted_iou: np.ndarray,
    stability: np.ndarray,
    area: np.ndarray,
    bbox_xywh: np.ndarray,
    image_size: tuple[float, float] | np.ndarray,
) -> np.ndarray:
    """(N, F) float64. ``image_size`` is (H, W), or an (N, 2) array of per-row (H, W)."""
    size = np.asarray(image_size, dtype=np.float64)
    h, w = (size[..., 0], size[..., 1])
    b = np.asarray(bbox_xywh, dtype=np.float64).reshape(-1, 4)
    args = (
        np.asarray(predicted_iou, dtype=np.float64),
        np.asarray(stability, dtype=np.float64),
        np.asarray(area, dtype=np.float64),
        b,
        h,
        w,
    )
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise InvalidInput(f"unknown calibration feature(s) {unknown}; known: {list(FEATURES)}")
    if len(b) == 0:
        return np.zeros((0, len(names)))
    return np.stack([np.broadcast_to(FEATURES[n](*args), (len(b),)) for n in names], axis=1)


def score_proposals(
    calibration: dict[str, Any], proposals: list[Proposal], image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence (N,) float64 in [0, 1], confident (N,) bool) for one image's proposals.

    ``image_size`` is (H, W). Raises InvalidInput when the calibration dict is malformed.
    """
    kind = calibration.get("kind")
    if kind != "logistic":
        raise InvalidInput(f"unknown calibration kind {kind!r}; this version reads 'logistic'")
    if not proposals:
        return np.zeros(0), np.zeros(0, dtype=bool)
    x = feature_matrix(
        calibration["features"],
        np.array([p.predicted_iou for p in proposals], dtype=np.float64),
        np.array([p.stability for p in proposals], dtype=np.float64),
        np.array([p.area for p in proposals], dtype=np.float64),
        np.array([p.bbox for p in proposals], dtype=np.float64),
        image_size,
    )
    conf = _predict(calibration, x)
    confident = conf >= float(calibration["threshold"])
    if "support_lo" in calibration:  # never extrapolate past the decisions it was fitted on
        lo = np.asarray(calibration["support_lo"], dtype=np.float64)
        hi = np.asarray(calibration["support_hi"], dtype=np.float64)
        confident &= ((x >= lo) & (x <= hi)).all(axis=1)
    return conf, confident


def _predict(calibration: dict[str, Any], x: np.ndarray) -> np.ndarray:
    z = x @ np.asarray(calibration["coef"], dtype=np.float64) + float(calibration["intercept"])
    return _sigmoid(z)


def pick_threshold(
    scores: np.ndarray,
    y: np.ndarray,
    target: float,
    *,
    fallback_precision: float | None = None,
    gain_s: float | None = None,
    reject_s: float = 1.0,
) -> tuple[float, bool]:
    """Lowest threshold t with precision(scores >= t) >= target; else a fallback.

    The fallback (target unreachable) is, with ``gain_s``, the t that saves the most
    annotator seconds: sum over shown of ``gain_s`` per accept minus ``reject_s`` per
    reject (``NEVER``, show nothing, when no t saves time); otherwise the lowest t whose
    precision reaches ``fallback_precision`` when given and reachable, else the most
    precise t. Returns (threshold, target_met). Ties are kept together.
    """
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], y[order].astype(np.float64)
    tp = np.cumsum(t)
    k = np.arange(1, len(s) + 1)
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    prec = np.where(last_of_tie, tp / k, -1.0)
    ok = np.flatnonzero(prec >= target)
    if len(ok):
        return float(s[ok[-1]]), True
    if gain_s is not None:
        saved = np.where(last_of_tie, tp * gain_s - (k - tp) * reject_s, -np.inf)
        best = int(np.argmax(saved))
        return (float(s[best]) if saved[best] > 0 else NEVER), False
    if fallback_precision is not None:
        ok = np.flatnonzero((prec >= fallback_precision) & (tp > 0))
        if len(ok):
            return float(s[ok[-1]]), False
    best = int(np.argmax(prec))
    return float(s[best]), False


def contribution_threshold(scores: np.ndarray, kept: np.ndarray, need: float) -> float | None:
    """Highest threshold t whose shown set ``scores >= t`` holds ``k`` kept proposals with
    ``k - sqrt(k) >= need`` (one Poisson standard deviation of margin); None when even
    showing everything falls short. Ties are kept together."""
    order = np.argsort(-scores, kind="stable")
    s, ck = scores[order], np.cumsum(kept[order].astype(np.float64))
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    ok = np.flatnonzero(last_of_tie & (ck - np.sqrt(ck) >= need) & (ck > 0))
    return float(s[ok[0]]) if len(ok) else None


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    return (x - mean) / scale, mean, scale


Fit = tuple[np.ndarray, float, np.ndarray | None, int]  # coef, intercept, held-out, folds


def _logistic(
    xs: np.ndarray, labels: np.ndarray, seed: int, *, cv: bool = True
) -> tuple[Any, np.ndarray | None, int]:
    """Logistic regression fitted on all rows, its cross-validated (held-out) logits (None
    without ``cv`` or with fewer than 2 rows of either class), and the number of folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed)
    n_pos = int(labels.sum())
    folds = min(5, n_pos, len(labels) - n_pos)
    z_cv = None
    if cv and folds >= 2:
        split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        z_cv = cross_val_predict(model, xs, labels, cv=split, method="decision_function")
    model.fit(xs, labels)
    return model, z_cv, folds if z_cv is not None else 0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _ranked_on_kept(xs: np.ndarray, y: np.ndarray, kept: np.ndarray, seed: int) -> Fit | None:
    """Rank on ``kept``, Platt-map to P(accept): (coef on xs, intercept, held-out
    probabilities or None, CV folds), or None when the kept score does not order the
    accepts."""
    ranker, z_cv, folds = _logistic(xs, kept, seed)
    platt, _, _ = _logistic(ranker.decision_function(xs)[:, None], y, seed, cv=False)
    a, c = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    if a <= 0:
        return None
    held_out = None if z_cv is None else _sigmoid(a * z_cv + c)
    return a * ranker.coef_[0], a * float(ranker.intercept_[0]) + c, held_out, folds


def _ranked_on_accepts(xs: np.ndarray, y: np.ndarray, seed: int) -> Fit:
    """Logistic fit on the accepts themselves: (coef on xs, intercept, held-out
    probabilities or None, CV folds)."""
    model, z_cv, folds = _logistic(xs, y, seed)
    held_out = None if z_cv is None else _sigmoid(z_cv)
    return model.coef_[0], float(model.intercept_[0]), held_out, folds


def fit_calibration(
    x: np.ndarray,
    y: np.ndarray,
    *,
    features: Sequence[str],
    target_precision: float = 0.90,
    fallback_lift: float = FALLBACK_LIFT,
    base_precision: float | None = None,
    kept: np.ndarray | None = None,
    base_kept: float | None = None,
    gain_s: float | None = None,
    reject_s: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the logistic model on (N, F) features and 0/1 accept labels; returns the
    calibration dict.

    ``kept`` (N 0/1, 1 for every accept and for proposals that became a final mask some
    other way) switches on the two-step fit of the module docstring. When no threshold
    reaches ``target_precision`` on held-out predictions, the fallback is, with
    ``base_kept`` (kept proposals the parent's rule showed on these images, scaled to all
    of them), the most precise threshold that keeps at least that many; else, with
    ``gain_s`` (seconds an accepted proposal saves the annotator), the threshold that saves
    the most time net of ``reject_s`` per rejected one; else the largest shown set whose
    held-out precision is at least ``fallback_lift`` times ``base_precision`` (the
    precision of what the parent showed, and at least ``y.mean()``); failing that too, the
    most precise threshold. ``target_met`` False and ``fallback_rule`` record which rule.
    """
    if not 0.0 < target_precision <= 1.0:
        raise InvalidInput(f"target precision must be in (0, 1], got {target_precision}")
    y = np.asarray(y, dtype=np.int64)
    n, n_pos = len(y), int(y.sum())
    if n < MIN_SAMPLES or n_pos == 0 or n_pos == n:
        raise InvalidInput(
            f"calibration needs at least {MIN_SAMPLES} reviewed proposals with both accepts "
            f"and rejects; have {n} ({n_pos} accepted). Annotate more pre-filled images first."
        )
    if kept is not None:
        kept = np.asarray(kept, dtype=np.int64)
        if kept.shape != y.shape:
            raise InvalidInput(f"kept has {len(kept)} labels for {n} proposals")
        kept = np.maximum(kept, y)  # an accept is kept
    xs, mean, scale = _standardise(x)
    fit = None
    if kept is not None and 0 < kept.sum() < n:
        fit = _ranked_on_kept(xs, y, kept, seed)
    ranked_on = "kept" if fit is not None else "accepted"
    coef_s, intercept_s, held_out, folds = fit or _ranked_on_accepts(xs, y, seed)
    coef = coef_s / scale
    intercept = float(intercept_s - np.sum(coef_s * mean / scale))
    cal: dict[str, Any] = {
        "kind": "logistic",
        "features": list(features),
        "coef": [float(c) for c in coef],
        "intercept": intercept,
    }
    fitted = _predict(cal, x)
    scores = held_out if held_out is not None else fitted
    base = max(base_precision or 0.0, n_pos / n)  # never below the overall accept rate
    fallback = min(target_precision, fallback_lift * base)
    threshold, met = pick_threshold(
        scores, y, target_precision, fallback_precision=fallback, gain_s=gain_s, reject_s=reject_s
    )
    rule = None if met else ("net_seconds" if gain_s is not None else "precision_lift")
    if not met and kept is not None and base_kept is not None and base_kept > 0:
        t = contribution_threshold(scores, kept, base_kept)
        if t is not None:  # preferred over the other fallbacks when it is reachable
            threshold, rule = t, "contribution"
    # Map the held-out threshold onto the final model's scale by rank (same fraction shown).
    if held_out is not None and threshold < NEVER:
        frac_shown = float(np.mean(held_out >= threshold))
        threshold = float(np.quantile(fitted, 1.0 - frac_shown)) if frac_shown > 0 else 1.0
    shown = fitted >= threshold
    cal.update(
        threshold=threshold,
        target_precision=float(target_precision),
        target_met=bool(met),
        fallback_precision=float(fallback) if rule == "precision_lift" else None,
        fallback_rule=rule,
        base_kept=float(base_kept) if rule == "contribution" else None,
        gain_s=gain_s,
        reject_s=reject_s,
        n=n,
        n_positive=n_pos,
        n_kept=None if kept is None else int(kept.sum()),
        ranked_on=ranked_on,
        fitted_precision=float(y[shown].mean()) if shown.any() else None,
        fitted_recall=float(y[shown].sum() / n_pos),
        cv_folds=folds,
        support_lo=[float(v) for v in x.min(axis=0)],
        support_hi=[float(v) for v in x.max(axis=0)],
    )
    return cal
