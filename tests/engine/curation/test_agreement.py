"""Cohen's and Fleiss' kappa against reference values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from engine.curation.agreement import agreement, cohen_kappa, fleiss_kappa


def test_cohen_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    a = rng.choice(["keep", "drop"], 200).tolist()
    b = [x if rng.random() < 0.8 else ("drop" if x == "keep" else "keep") for x in a]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert cohen_kappa(a, a) == 1.0
    with pytest.raises(ValueError):
        cohen_kappa(["keep"], [])


def test_fleiss_wikipedia_example() -> None:
    # Fleiss (1971) worked example as on Wikipedia: 10 items, 14 raters, 5 categories -> 0.210
    counts = np.array(
        [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
         [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    )  # fmt: skip
    assert fleiss_kappa(counts) == pytest.approx(0.2099, abs=1e-3)
    with pytest.raises(ValueError, match="two ratings"):
        fleiss_kappa(np.array([[1, 0]]))


def test_agreement_summary_uses_only_overlapping_items() -> None:
    ratings = [
        (1, "ann", "keep"), (1, "bob", "keep"),
        (2, "ann", "drop"), (2, "bob", "keep"),
        (3, "ann", "keep"), (3, "bob", "keep"),
        (4, "ann", "drop"), (4, "bob", "drop"),
        (5, "ann", "keep"),  # only one rater: ignored
        (2, "ann", "keep"),  # a later rating replaces the earlier one
    ]  # fmt: skip
    out = agreement(ratings)
    assert out["items"] == 4 and out["raters"] == 2 and out["percent_agreement"] == 1.0
    assert out["pairs"] == [{"raters": ["ann", "bob"], "items": 4, "cohen": 1.0}]
    assert agreement([(1, "a", "keep")])["fleiss"] is None


def test_quadratic_weights_for_ratings() -> None:
    # Reference: with quadratic weights over the full integer scale, weighted kappa equals
    # 2 cov(a, b) / (var a + var b + (mean a - mean b)^2) (population moments).
    rng = np.random.default_rng(1)
    a = rng.integers(1, 6, 60)
    b = np.clip(a + rng.integers(-1, 2, 60), 1, 5)
    ref = 2 * np.cov(a, b, bias=True)[0, 1] / (a.var() + b.var() + (a.mean() - b.mean()) ** 2)
    got = cohen_kappa(a.tolist(), b.tolist(), weights="quadratic")
    assert got == pytest.approx(ref, abs=1e-12)
    assert got > cohen_kappa(a.tolist(), b.tolist())  # near misses count as partial agreement
    # hand-worked: opposite ends of the scale -> -1; the unused 2 and 4 still set the distances
    assert cohen_kappa([1, 5], [5, 1], weights="quadratic") == pytest.approx(-1.0)
    assert cohen_kappa([1, 3, 5, 5], [1, 5, 5, 3], weights="quadratic") == pytest.approx(
        2 * np.cov([1, 3, 5, 5], [1, 5, 5, 3], bias=True)[0, 1] / (2 * np.var([1, 3, 5, 5]))
    )
    assert cohen_kappa([4, 4], [4, 4], weights="quadratic") == 1.0
    with pytest.raises(ValueError, match="integer ratings"):
        cohen_kappa(["keep", "drop"], ["keep", "keep"], weights="quadratic")


def test_agreement_passes_weights_to_pairs() -> None:
    ratings = [(i, "ann", r) for i, r in enumerate([1, 2, 3, 4, 5, 3])] + [
        (i, "bob", r) for i, r in enumerate([2, 2, 3, 5, 5, 2])
    ]
    plain, weighted = agreement(ratings), agreement(ratings, weights="quadratic")
    assert weighted["weights"] == "quadratic" and plain["weights"] is None
    assert weighted["pairs"][0]["cohen"] > plain["pairs"][0]["cohen"]
    assert weighted["fleiss"] == plain["fleiss"]
