"""scripts/eval_proposals.py: the confident-threshold sweep and the pick rule, on hand-made
scores (the full run over ../shared/data is the script's output, docs/prefill.md)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from scripts.eval_proposals import Scored, pick, sweep, wilson


def _scored(name: str, preds: list[float], best: list[float]) -> Scored:
    light = [
        SimpleNamespace(predicted_iou=p, stability=0.97, area=400, bbox=[10.0 * i, 0.0, 8.0, 8.0])
        for i, p in enumerate(preds)
    ]
    return Scored(name, light, np.asarray(best, dtype=np.float64), (100, 200), np.zeros(0))


def test_sweep_counts_precision_and_photos() -> None:
    gt = [
        _scored("a", [0.9, 0.7, 0.5], [0.8, 0.2, 0.6]),
        _scored("b", [0.75, 0.65], [0.55, 0.1]),
    ]
    photos = [_scored("p1", [0.9, 0.8, 0.7, 0.6], []), _scored("p2", [0.62, 0.5], [])]
    rows = sweep(gt, photos, [0.6, 0.72], stability=[0.95, 0.99], correct_iou=0.5, several=2)
    by = {(r["stability_thresh"], r["pred_iou_thresh"]): r for r in rows}
    r = by[(0.95, 0.6)]
    assert r["confident"] == 4 and r["precision"] == pytest.approx(2 / 4)  # 0.8, 0.55 correct
    assert r["per_photo"] == {"p1": 4, "p2": 1} and r["photos_with_several"] == 1
    assert by[(0.95, 0.72)]["precision"] == pytest.approx(2 / 2)  # 0.9 and 0.75 only
    assert by[(0.99, 0.6)]["confident"] == 0  # every stability is 0.97
    lo, hi = r["precision_lo"], r["precision_hi"]
    assert (lo, hi) == pytest.approx(wilson(2, 4)) and lo < 0.5 < hi
    # the pick: most precise among thresholds giving several masks on >= half the photos
    assert pick(rows, n_photos=2, share=0.5)["pred_iou_thresh"] == 0.72
    assert pick(rows, n_photos=2, share=1.0) is None


def test_wilson_interval() -> None:
    lo, hi = wilson(12, 100)
    assert 0.06 < lo < 0.12 < hi < 0.21
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert all(np.isnan(wilson(0, 0)))
