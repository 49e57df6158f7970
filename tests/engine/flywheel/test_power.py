"""Sample size for a change in seconds per mask: analytic n, checked by simulation."""

from __future__ import annotations

import numpy as np
import pytest

from engine.flywheel.power import images_per_arm, power_analysis, ratio_and_sd


def _rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = rng.integers(1, 6, n).astype(float)
    seconds = masks * 4.0 + rng.normal(0, 3.0, n)
    return seconds, masks


def test_analytic_n_matches_the_formula_and_the_simulation() -> None:
    seconds, masks = _rows(400)
    ratio, sd = ratio_and_sd(seconds, masks)
    assert ratio == pytest.approx(seconds.sum() / masks.sum())
    n = images_per_arm(sd, ratio, 0.1)
    assert n == int(np.ceil(2 * sd**2 * (1.959964 + 0.841621) ** 2 / (0.1 * ratio) ** 2))
    res = power_analysis(seconds, masks, delta=0.1, reps=2000)
    assert res.images_per_arm == n
    assert 0.72 <= res.simulated_power <= 0.9  # ~80 % by construction
    smaller = power_analysis(seconds, masks, delta=0.2, reps=500)
    assert smaller.images_per_arm < n / 3  # a 2x larger change needs ~4x fewer images


def test_power_needs_variance() -> None:
    with pytest.raises(ValueError, match="at least 2 images"):
        ratio_and_sd(np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="relative change"):
        images_per_arm(1.0, 1.0, 1.5)
