"""Sample size for a change in seconds per mask between two arms (or two rounds).

Seconds per final mask is a ratio of per-image sums, R = sum(S) / sum(M) over images
(S active seconds, M final masks). Its variance comes from the delta method on the per-image
residuals d_i = (S_i - R M_i) / mean(M): Var(R) ~= var(d) / n.

``images_per_arm`` (analytic): to detect a relative change ``delta`` (R -> (1 - delta) R) with a
two-sided test at level ``alpha`` and power ``power``, with both arms having the measured
per-image variance, n = 2 var(d) (z_{1-alpha/2} + z_{power})^2 / (delta R)^2 images per arm.

``simulated_power`` checks it by simulation: draw n images per arm from the measured rows
(with replacement), scale arm B's seconds by (1 - delta), test R_A = R_B with the same
delta-method z statistic; the share of rejections over ``reps`` draws is the power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


@dataclass
class PowerResult:
    """``images_per_arm`` (analytic), its ``simulated_power``, the measured ``ratio`` (s/mask),
    ``sd_residual`` (sd of d_i, seconds per mask), ``n_measured`` images measured."""

    ratio: float
    sd_residual: float
    n_measured: int
    delta: float
    alpha: float
    power: float
    images_per_arm: int
    simulated_power: float


def ratio_and_sd(seconds: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """(R, sd of the linearised residuals) of per-image (n,) seconds and final masks."""
    s, m = np.asarray(seconds, dtype=np.float64), np.asarray(masks, dtype=np.float64)
    if len(s) < 2 or m.sum() <= 0:
        raise ValueError("need at least 2 images with final masks to estimate the variance")
    r = s.sum() / m.sum()
    d = (s - r * m) / m.mean()
    return float(r), float(d.std(ddof=1))


def images_per_arm(sd: float, ratio: float, delta: float, alpha: float = 0.05,
                   power: float = 0.8) -> int:  # fmt: skip
    """Analytic images per arm (see the module docstring)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta is a relative change in (0, 1), got {delta}")
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return max(2, math.ceil(2 * sd * sd * z * z / (delta * ratio) ** 2))


def _ratio_se(s: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise (reps, n) -> (R, SE) with the delta method."""
    r = s.sum(1) / m.sum(1)
    d = (s - r[:, None] * m) / m.mean(1, keepdims=True)
    return r, d.std(1, ddof=1) / math.sqrt(s.shape[1])


def simulated_power(seconds: np.ndarray, masks: np.ndarray, n: int, delta: float,
                    alpha: float = 0.05, reps: int = 2000, seed: int = 0) -> float:  # fmt: skip
    """Share of ``reps`` simulated two-arm experiments (n images each) that detect ``delta``."""
    s, m = np.asarray(seconds, dtype=np.float64), np.asarray(masks, dtype=np.float64)
    rng = np.random.default_rng(seed)
    crit = norm.ppf(1 - alpha / 2)
    hits = 0
    for start in range(0, reps, 200):
        k = min(200, reps - start)
        ia, ib = rng.integers(0, len(s), (k, n)), rng.integers(0, len(s), (k, n))
        ra, sea = _ratio_se(s[ia], m[ia])
        rb, seb = _ratio_se(s[ib] * (1 - delta), m[ib])
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (ra - rb) / np.sqrt(sea**2 + seb**2)
        hits += int(np.sum(np.abs(np.nan_to_num(z)) > crit))
    return hits / reps


def power_analysis(seconds: np.ndarray, masks: np.ndarray, *, delta: float = 0.1,
                   alpha: float = 0.05, power: float = 0.8, reps: int = 2000,
                   seed: int = 0) -> PowerResult:  # fmt: skip
    """Images per arm to detect ``delta`` at ``power``, from measured per-image rows."""
    ratio, sd = ratio_and_sd(seconds, masks)
    n = images_per_arm(sd, ratio, delta, alpha, power)
    sim = simulated_power(seconds, masks, n, delta, alpha, reps, seed)
    return PowerResult(ratio, sd, len(seconds), delta, alpha, power, n, sim)
