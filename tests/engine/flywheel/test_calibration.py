"""Calibration: fit on human decisions of shown proposals, threshold for a target precision."""

from __future__ import annotations

import numpy as np
import pytest

from db.errors import InvalidInput
from engine.flywheel.calibration import (
    DEFAULT_FEATURES,
    NEVER,
    contribution_threshold,
    feature_matrix,
    fit_calibration,
    pick_threshold,
    score_proposals,
)
from engine.segment.protocol import Proposal
from tests.factories import proposal_decisions


def test_pick_threshold_is_the_lowest_meeting_the_target() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([1, 1, 1, 0, 1, 0])
    assert pick_threshold(scores, y, 1.0) == (0.7, True)
    assert pick_threshold(scores, y, 0.8) == (0.5, True)
    t, met = pick_threshold(np.array([0.9, 0.8]), np.array([0, 1]), 0.9)
    assert (t, met) == (0.8, False)  # best available precision (0.5), flagged
    # ties are never split: both 0.7s are in or out together
    assert pick_threshold(np.array([0.9, 0.7, 0.7]), np.array([1, 1, 0]), 0.9) == (0.9, True)


def test_pick_threshold_fallback_is_the_largest_set_at_the_fallback_precision() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([0, 1, 0, 1, 0, 0])  # prefix precision 0, .5, .33, .5, .4, .33
    assert pick_threshold(scores, y, 0.9) == (0.8, False)  # no fallback: most precise
    assert pick_threshold(scores, y, 0.9, fallback_precision=0.5) == (0.6, False)
    assert pick_threshold(scores, y, 0.9, fallback_precision=0.4) == (0.5, False)
    # an unreachable fallback falls back to the most precise threshold
    assert pick_threshold(scores, y, 0.95, fallback_precision=0.95) == (0.8, False)


def test_fit_with_unreachable_target_doubles_the_base_rate() -> None:
    rng = np.random.default_rng(1)
    n = 600
    iou = rng.uniform(0.0, 1.0, n)
    y = (rng.uniform(0, 1, n) < 0.25 * iou**2).astype(int)  # precision never near 0.9
    x = np.stack([iou, rng.uniform(0.8, 1.0, n)], axis=1)
    names = ["predicted_iou", "stability"]
    cal = fit_calibration(x, y, features=names, target_precision=0.9)
    assert not cal["target_met"]
    assert cal["fallback_precision"] == pytest.approx(2 * y.mean())
    shown = fit_calibration.__globals__["_predict"](cal, x) >= cal["threshold"]
    assert y[shown].mean() > 1.5 * y.mean()  # clearly more precise than showing everything
    assert 0.05 < shown.mean() < 0.9  # but still a real share of the proposals


def test_fit_reaches_target_precision_and_scores_proposals() -> None:
    x, y = proposal_decisions(400)
    bbox = np.tile([10.0, 10.0, 20.0, 20.0], (len(y), 1))
    feats = feature_matrix(
        DEFAULT_FEATURES, x[:, 0], x[:, 1], np.full(len(y), 300.0), bbox, (100, 100)
    )
    cal = fit_calibration(feats, y, features=DEFAULT_FEATURES, target_precision=0.9)
    assert cal["kind"] == "logistic" and cal["n"] == 400 and cal["target_met"]
    assert cal["fitted_precision"] >= 0.85
    assert y.mean() < 0.85  # the raw proposals are well below the target
    assert cal["coef"][DEFAULT_FEATURES.index("predicted_iou")] > 0
    props = [
        Proposal(mask=np.zeros((100, 100), bool), predicted_iou=v, stability=0.9,
                 bbox=[10.0, 10.0, 20.0, 20.0], area=300)
        for v in (0.55, 0.75, 0.99)
    ]  # fmt: skip
    conf, ok = score_proposals(cal, props, (100, 100))
    assert conf.shape == (3,) and conf.dtype == np.float64 and ok.dtype == bool
    assert conf[0] < conf[1] < conf[2] and not ok[0] and ok[2]
    assert score_proposals(cal, [], (100, 100))[0].shape == (0,)


def test_fit_refuses_too_little_or_one_sided_data() -> None:
    x = np.zeros((30, 2))
    with pytest.raises(InvalidInput, match="both accepts"):
        fit_calibration(x, np.ones(30), features=["predicted_iou", "stability"])
    with pytest.raises(InvalidInput, match="at least"):
        fit_calibration(x[:5], np.r_[1, 0, 1, 0, 1], features=["predicted_iou", "stability"])
    with pytest.raises(InvalidInput, match="unknown calibration kind"):
        score_proposals({"kind": "magic"}, [], (1, 1))


def test_scores_outside_the_judged_support_are_never_confident() -> None:
    x, y = proposal_decisions(400)
    names = ["predicted_iou", "stability"]
    cal = fit_calibration(x, y, features=names, target_precision=0.9)
    assert cal["support_lo"] == pytest.approx(list(x.min(0)))
    assert cal["support_hi"] == pytest.approx(list(x.max(0)))
    props = [
        Proposal(mask=np.zeros((10, 10), bool), predicted_iou=0.99, stability=st,
                 bbox=[1.0, 1.0, 5.0, 5.0], area=20)
        for st in (0.95, 0.5)
    ]  # fmt: skip
    conf, ok = score_proposals(cal, props, (10, 10))
    assert ok[0] and not ok[1]  # stability 0.5 was never judged (training had 0.7..1.0)
    legacy = {k: v for k, v in cal.items() if not k.startswith("support_")}
    assert score_proposals(legacy, props, (10, 10))[1].all()  # old dicts still score


def test_unreachable_target_picks_the_threshold_that_saves_the_most_time() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([0, 1, 1, 0, 0, 0])  # best precision 2/3: the 0.95 target is out of reach
    # gain 3 s per accept, 1 s per reject: top 1 saves -1, top 2 saves 2, top 3 saves 5,
    # top 4 saves 4
    assert pick_threshold(scores, y, 0.95, gain_s=3.0, reject_s=1.0) == (0.7, False)
    # when an accept saves less than rejects cost, nothing is shown
    assert pick_threshold(scores, y, 0.95, gain_s=0.5, reject_s=1.0) == (NEVER, False)


def test_contribution_threshold_keeps_the_parents_count_with_a_margin() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.7, 0.5, 0.4, 0.3])
    kept = np.array([1, 1, 1, 0, 1, 1, 1])
    # cumulative kept 1, 2, 3, 3, 4, 5, 6; k - sqrt(k) >= need
    assert contribution_threshold(scores, kept, 0.5) == 0.8  # 2 - 1.41 >= 0.5
    assert contribution_threshold(scores, kept, 1.0) == 0.7  # 3 - 1.73; the 0.7 tie together
    assert contribution_threshold(scores, kept, 1.5) == 0.5  # 4 - 2 >= 1.5 > 3 - 1.73
    assert contribution_threshold(scores, kept, 3.5) == 0.3
    assert contribution_threshold(scores, kept, 4.0) is None  # 6 - 2.45 < 4: out of reach


def _rare_accepts(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, accepts (~2 %) and kept labels (~25 %, a superset) rising with feature 0."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.0, 1.0, n)
    x = np.stack([q + rng.normal(0, 0.15, n), rng.uniform(0.8, 1.0, n)], axis=1)
    kept = rng.uniform(0, 1, n) < 0.5 * q**2
    accepted = kept & (rng.uniform(0, 1, n) < 0.1 * q)
    return x, accepted.astype(int), kept.astype(int)


def test_rare_accepts_rank_on_kept_and_keep_the_parents_contribution() -> None:
    x, y, kept = _rare_accepts(2000)
    parent = np.random.default_rng(1).uniform(0, 1, len(y)) < 0.5  # showed a random half
    base_kept = float(kept[parent].sum())
    names = ["predicted_iou", "stability"]
    cal = fit_calibration(x, y, features=names, kept=kept, base_kept=base_kept, gain_s=30.0)
    assert cal["ranked_on"] == "kept" and cal["n_kept"] == int(kept.sum())
    assert not cal["target_met"] and cal["fallback_rule"] == "contribution"
    assert cal["base_kept"] == base_kept and cal["fallback_precision"] is None
    p = fit_calibration.__globals__["_predict"](cal, x)
    assert 0.0 < p.max() < 0.5  # a probability of acceptance, not of being kept
    shown = p >= cal["threshold"]
    assert kept[shown].sum() >= base_kept  # the parent's contribution is kept ...
    assert shown.sum() < parent.sum()  # ... with fewer proposals shown ...
    assert y[shown].mean() > 1.3 * y[parent].mean()  # ... at a clearly higher precision
    # without kept labels the same data falls back to the time-saving rule on the accepts
    plain = fit_calibration(x, y, features=names, gain_s=30.0)
    assert plain["ranked_on"] == "accepted" and plain["fallback_rule"] == "net_seconds"


def test_kept_labels_that_do_not_order_the_accepts_are_not_used() -> None:
    x, y, _ = _rare_accepts(1000)
    kept = np.maximum((x[:, 0] < 0.2).astype(int), y)  # kept mostly where accepts are not
    cal = fit_calibration(x, y, features=["predicted_iou", "stability"], kept=kept)
    assert cal["ranked_on"] == "accepted"
    with pytest.raises(InvalidInput, match="kept has 3 labels"):
        fit_calibration(x, y, features=["predicted_iou", "stability"], kept=np.ones(3))
