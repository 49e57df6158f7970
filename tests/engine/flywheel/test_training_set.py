"""Labelling proposals for calibration from plain rows (no database)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from engine.flywheel.calibration import DEFAULT_FEATURES
from engine.flywheel.training_set import empty_training_set, label_proposals
from engine.masks import encode_rle
from tests.factories import box_mask

H, W = 48, 64


def _proposal(image_id: int, box: tuple[int, int, int, int], **kw: Any) -> SimpleNamespace:
    x0, y0, x1, y1 = box
    base = {"image_id": image_id, "predicted_iou": 0.7, "stability": 0.9,
            "area": (x1 - x0) * (y1 - y0), "bbox": [x0, y0, x1 - x0, y1 - y0],
            "status": "proposed", "confident": True, "arm": "prefill", "height": H, "width": W,
            "rle": encode_rle(box_mask(H, W, *box))}  # fmt: skip
    return SimpleNamespace(**{**base, **kw})


def test_shown_proposals_carry_the_decision_and_unseen_ones_the_final_masks() -> None:
    rows = [
        _proposal(1, (0, 0, 10, 10), status="accepted"),  # shown, accepted
        _proposal(1, (20, 0, 30, 10), status="superseded"),  # shown, fixed: kept, y 0
        _proposal(1, (0, 20, 10, 30), status="rejected", confident=False),  # hidden
        _proposal(2, (0, 0, 10, 10), arm="control"),  # control: never shown
        _proposal(2, (30, 30, 40, 40), arm="control"),  # nothing drawn there
    ]
    finals = {1: [encode_rle(box_mask(H, W, 0, 20, 10, 30))],
              2: [encode_rle(box_mask(H, W, 0, 0, 10, 12))]}  # fmt: skip
    ts = label_proposals(rows, revealed=set(), finals=finals)
    assert ts.shown.tolist() == [True, True, False, False, False]
    assert ts.y.tolist() == [1, 0, 1, 0, 0]  # 10x10 in 10x12: IoU 0.83 < 0.85
    assert ts.kept.tolist() == [1, 1, 1, 1, 0]
    assert ts.prefill.tolist() == [True, True, True, False, False]
    assert ts.x.shape == (5, len(DEFAULT_FEATURES))
    assert ts.parent_kept() == 2.0 / 1 * 2  # two kept shown on one pre-fill image, x 2 images


def test_revealed_images_show_their_less_confident_proposals() -> None:
    rows = [_proposal(1, (0, 0, 10, 10), confident=False, status="rejected")]
    finals = {1: [encode_rle(box_mask(H, W, 0, 0, 10, 10))]}
    assert label_proposals(rows, revealed={1}, finals=finals).y.tolist() == [0]
    assert label_proposals(rows, revealed=set(), finals=finals).y.tolist() == [1]


def test_no_rows_give_an_empty_set() -> None:
    ts = label_proposals([], revealed=set(), finals={})
    assert ts.x.shape == (0, len(DEFAULT_FEATURES)) and ts.parent_kept() is None
    assert np.array_equal(ts.y, empty_training_set().y)
