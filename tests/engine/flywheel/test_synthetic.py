"""The synthetic proposer: injected precision / recall / boundary noise / hidden proposals."""

from __future__ import annotations

import numpy as np
import pytest

from engine.flywheel.synthetic import (
    CORRECT_MIN_IOU,
    WRONG_MAX_IOU,
    ProposalSpec,
    SyntheticProposer,
    scene,
)
from engine.masks import mask_iou
from engine.segment.registry import image_key
from scripts.eval_proposals import wilson


def _proposer(spec: ProposalSpec, n: int = 150) -> tuple[SyntheticProposer, list]:
    rng = np.random.default_rng(5)
    scenes = [scene(rng) for _ in range(n)]
    truth = {image_key(img): masks for img, masks in scenes}
    return SyntheticProposer(None, truth, spec, seed=1), scenes  # type: ignore[arg-type]


@pytest.mark.parametrize(("precision", "recall"), [(0.9, 0.7), (0.3, 0.2)])
def test_injected_precision_and_recall_within_binomial_intervals(
    precision: float, recall: float
) -> None:
    spec = ProposalSpec(precision=precision, recall=recall, noise_px=3, hidden=2)
    prop, scenes = _proposer(spec)
    rule = spec.rule()
    correct = shown = objects = recalled = 0
    for img, masks in scenes:
        props = prop.propose(img)
        conf = rule.apply(props, img.shape[:2])
        rec = prop.generated[image_key(img)]
        assert conf.tolist() == rec.shown  # the rule shows exactly what was generated as shown
        assert sum(not s for s in rec.shown) == 2
        for p, c, ok in zip(props, conf, rec.correct, strict=True):
            best = max((mask_iou(p.mask, g) for g in masks), default=0.0)
            assert best >= CORRECT_MIN_IOU if ok else best < WRONG_MAX_IOU
            assert (p.predicted_iou >= spec.shown_thresh) == bool(c)
        shown += int(conf.sum())
        correct += sum(ok for ok, s in zip(rec.correct, rec.shown, strict=True) if s)
        objects += len(masks)
        recalled += sum(rec.correct)
    lo, hi = wilson(correct, shown)
    assert lo <= precision <= hi
    lo, hi = wilson(recalled, objects)
    assert lo <= recall <= hi


def test_scores_follow_true_iou_and_unknown_images_fail() -> None:
    prop, scenes = _proposer(ProposalSpec(precision=0.5, recall=0.8, rho=0.9), n=40)
    for img, _ in scenes:
        prop.propose(img)
    pred = np.concatenate([g.predicted for g in prop.generated.values()])
    true = np.concatenate([g.true_iou for g in prop.generated.values()])
    shown = np.concatenate([g.shown for g in prop.generated.values()])
    assert np.corrcoef(pred[shown], true[shown])[0, 1] > 0.6
    with pytest.raises(ValueError, match="no ground truth"):
        prop.propose(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="precision"):
        ProposalSpec(precision=0.0)
