"""Curation signals in plain words, placed within the project: "Sharp: top 12 % of this project".

A raw signal value ("sharpness 3644.36") means nothing to a curator; its rank among the
project's images does. ``percentile_rank`` is the share (0-100) of the project's values at
or below a value; ``describe`` turns it into a phrase in the signal's good direction
(sharper, less noisy, more colourful ...). Signals without a direction (aspect ratio) are
described by their value only.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from typing import Any

# signal -> (word for a high rank, True when higher values are better)
WORDS: dict[str, tuple[str, bool]] = {
    "quality": ("Overall quality", True),
    "sharpness": ("Sharp", True),
    "noise": ("Clean (low noise)", False),
    "colourfulness": ("Colourful", True),
    "short_side": ("Resolution", True),
    "ranker": ("Ranked by the model", True),
    "aesthetic": ("Aesthetic score", True),
    "contrast": ("Contrast", True),
}


def sorted_values(signals: Iterable[Mapping[str, Any] | None]) -> dict[str, list[float]]:
    """Per signal, the finite values of every image's ``signals`` dict, sorted ascending."""
    out: dict[str, list[float]] = {}
    for s in signals:
        for k, v in (s or {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                out.setdefault(k, []).append(float(v))
    for vals in out.values():
        vals.sort()
    return out


def percentile_rank(value: float, population: list[float]) -> float:
    """Share (0-100) of ``population`` (sorted ascending) at or below ``value``."""
    if not population:
        raise ValueError("percentile_rank needs at least one value in the population")
    return 100.0 * bisect.bisect_right(population, value) / len(population)


def describe(name: str, value: float, population: list[float]) -> dict[str, Any]:
    """``{"signal", "value", "percentile", "text"}`` for one image's signal.

    ``percentile``: the share of the project at or below ``value`` (None without a
    population). ``text``: e.g. "Sharp: top 12 % of this project" (good direction), or
    "Aspect ratio: 1.50" for signals without one.
    """
    word, higher_better = WORDS.get(name, (name.replace("_", " ").capitalize(), True))
    if name not in WORDS or not population:
        return {"signal": name, "value": value, "percentile": None, "text": f"{word}: {value:.2f}"}
    pct = percentile_rank(value, population)
    if higher_better:
        # top = share of images at or above this one
        top = 100.0 - 100.0 * bisect.bisect_left(population, value) / len(population)
    else:
        top = pct
    top_i = max(1, min(100, math.ceil(top)))
    if len(population) == 1:
        text = f"{word}: the only image measured in this project"
    elif top_i <= 50:
        text = f"{word}: top {top_i} % of this project"
    else:
        text = f"{word}: bottom {max(1, 101 - top_i)} % of this project"
    return {"signal": name, "value": value, "percentile": round(pct, 1), "text": text}


def describe_all(
    signals: Mapping[str, Any], population: Mapping[str, list[float]], names: Iterable[str]
) -> list[dict[str, Any]]:
    """``describe`` for each of ``names`` the image has, in that order."""
    out = []
    for name in names:
        v = signals.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.append(describe(name, float(v), population.get(name, [])))
    return out
