"""Inter-curator agreement on overlapping items: Cohen's kappa (2 raters) and Fleiss' kappa.

Input is a list of ratings ``(item, rater, category)``; categories are any hashable
labels (``"keep"``/``"drop"``, ratings 1..5). Only items rated by at least two different
raters count. A rater's later rating of the same item replaces the earlier one.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from itertools import combinations

import numpy as np


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters' parallel category lists (nan if undefined: no items)."""
    if len(a) != len(b):
        raise ValueError("both raters must rate the same items (parallel lists)")
    n = len(a)
    if n == 0:
        return float("nan")
    cats = sorted(set(a) | set(b), key=repr)
    idx = {c: i for i, c in enumerate(cats)}
    m = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b, strict=True):
        m[idx[x], idx[y]] += 1
    po = np.trace(m) / n
    pe = float((m.sum(axis=1) / n) @ (m.sum(axis=0) / n))
    if pe >= 1.0:
        return 1.0 if po >= 1.0 else float("nan")
    return float((po - pe) / (1.0 - pe))


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


def agreement(ratings: Iterable[tuple[Hashable, Hashable, Hashable]]) -> dict[str, object]:
    """Summary of agreement on items rated by >= 2 raters.

    Returns ``{"items": n overlapping, "raters": n, "fleiss": float|None,
    "percent_agreement": float|None, "pairs": [{"raters": [r1, r2], "items": n, "cohen": k}]}``
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
        k = cohen_kappa([overlap[i][r1] for i in common], [overlap[i][r2] for i in common])
        pairs.append(
            {
                "raters": [r1, r2],
                "items": len(common),
                "cohen": None if np.isnan(k) else round(k, 4),
            }
        )
    out["pairs"] = pairs
    return out
