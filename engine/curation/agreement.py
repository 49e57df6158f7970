"""Inter-curator agreement on overlapping items: Cohen's kappa (2 raters) and Fleiss' kappa.

Cohen's kappa is scikit-learn's (quadratic weights for the ordinal 1-5 ratings). Fleiss'
kappa stays here: scikit-learn has none, and statsmodels (which has) would pull pandas
and patsy into the app for one formula; it is checked against Fleiss' (1971) example.

Input is a list of ratings ``(item, rater, category)``; categories are any hashable
labels (``"keep"``/``"drop"``, ratings 1..5). Only items rated by at least two different
raters count. A rater's later rating of the same item replaces the earlier one.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from itertools import combinations
from typing import Literal

import numpy as np
from sklearn.metrics import cohen_kappa_score

Weights = Literal["linear", "quadratic"] | None


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable], *, weights: Weights = None) -> float:
    """Cohen's kappa of two raters' parallel category lists (``sklearn.metrics.cohen_kappa_score``).

    ``weights`` None treats categories as nominal (keep/drop); ``"quadratic"`` (or
    ``"linear"``) treats them as ordinal integers (the 1-5 ratings): disagreement costs
    the squared distance between the values, over the full integer range between the
    smallest and largest value seen (so 1 vs 3 costs more than 1 vs 2 even if no 2 was
    given). Returns nan when there are no items; 1.0 when both raters used one category.
    """
    if len(a) != len(b):
        raise ValueError("both raters must rate the same items (parallel lists)")
    if len(a) == 0:
        return float("nan")
    cats = set(a) | set(b)
    if len(cats) == 1:
        return 1.0  # chance agreement is 1; sklearn would divide 0 by 0
    if weights is None:
        labels = sorted(cats, key=repr)
        ya, yb = [labels.index(x) for x in a], [labels.index(x) for x in b]
        return float(cohen_kappa_score(ya, yb))
    if not all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in cats):
        raise ValueError(
            f"{weights} weights need integer ratings (e.g. 1-5), got {sorted(cats, key=repr)}"
        )
    full = list(range(int(min(cats)), int(max(cats)) + 1))  # type: ignore[call-overload]
    return float(cohen_kappa_score(list(a), list(b), labels=full, weights=weights))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of an (items, categories) count matrix; rows may have different totals >= 2.

    Uses the per-item agreement ``P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1))`` and category
    shares pooled over all ratings (equals the textbook formula when every n_i is equal).
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] == 0:
        return float("nan")
    n_i = c.sum(axis=1)
    if (n_i < 2).any():
        raise ValueError("every item needs at least two ratings for Fleiss' kappa")
    p_i = ((c**2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_bar = float(p_i.mean())
    p_j = c.sum(axis=0) / c.sum()
    pe = float((p_j**2).sum())
    if pe >= 1.0:
        return 1.0 if p_bar >= 1.0 else float("nan")
    return (p_bar - pe) / (1.0 - pe)


def agreement(
    ratings: Iterable[tuple[Hashable, Hashable, Hashable]], *, weights: Weights = None
) -> dict[str, object]:
    """Summary of agreement on items rated by >= 2 raters.

    ``weights`` ("quadratic" for the 1-5 ratings) applies to the pairwise Cohen's kappa;
    Fleiss' kappa and percent agreement are unweighted.

    Returns ``{"items": n overlapping, "raters": n, "fleiss": float|None,
    "percent_agreement": float|None, "weights": str|None,
    "pairs": [{"raters": [r1, r2], "items": n, "cohen": k}]}``
    (None when no item overlaps; pairs sorted by rater).
    """
    by_item: dict[Hashable, dict[Hashable, Hashable]] = {}
    for item, rater, cat in ratings:
        by_item.setdefault(item, {})[rater] = cat
    overlap = {i: r for i, r in by_item.items() if len(r) >= 2}
    raters = sorted({r for rs in overlap.values() for r in rs}, key=repr)
    out: dict[str, object] = {
        "items": len(overlap),
        "raters": len(raters),
        "fleiss": None,
        "percent_agreement": None,
        "weights": weights,
        "pairs": [],
    }
    if not overlap:
        return out
    cats = sorted({c for rs in overlap.values() for c in rs.values()}, key=repr)
    col = {c: j for j, c in enumerate(cats)}
    counts = np.zeros((len(overlap), len(cats)))
    for i, rs in enumerate(overlap.values()):
        for cat in rs.values():
            counts[i, col[cat]] += 1
    fk = fleiss_kappa(counts)
    out["fleiss"] = None if np.isnan(fk) else round(fk, 4)
    out["percent_agreement"] = round(
        float(np.mean([len(set(rs.values())) == 1 for rs in overlap.values()])), 4
    )
    pairs = []
    for r1, r2 in combinations(raters, 2):
        common = [i for i, rs in overlap.items() if r1 in rs and r2 in rs]
        if not common:
            continue
        k = cohen_kappa(
            [overlap[i][r1] for i in common], [overlap[i][r2] for i in common], weights=weights
        )
        pairs.append(
            {
                "raters": [r1, r2],
                "items": len(common),
                "cohen": None if np.isnan(k) else round(k, 4),
            }
        )
    out["pairs"] = pairs
    return out
