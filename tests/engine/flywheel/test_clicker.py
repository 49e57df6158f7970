"""The RITM clicker: click placement, polarity, ignore band, and the click loop."""

from __future__ import annotations

import numpy as np
import pytest

from engine.flywheel.clicker import next_click, noc, run_clicks
from engine.segment.protocol import DecodeResult, Embedding


def _square(h=40, w=60, y0=10, y1=30, x0=20, x1=40) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_first_click_is_positive_at_object_centre():
    gt = _square()
    x, y, positive = next_click(gt, np.zeros_like(gt))
    assert positive
    assert 27 <= x <= 32 and 17 <= y <= 22


def test_false_alarm_larger_than_miss_gives_negative_click():
    gt = _square()
    pred = gt.copy()
    pred[:, 45:] = True  # a 15 px wide false positive strip against the border
    pred[12:14, 22:24] = False  # a tiny miss
    x, y, positive = next_click(gt, pred)
    assert not positive
    assert x >= 45


def test_border_counts_as_boundary_thanks_to_padding():
    gt = np.zeros((20, 20), bool)
    pred = np.zeros((20, 20), bool)
    pred[:, :6] = True  # false positive strip touching the left border
    x, _, positive = next_click(gt, pred)
    assert not positive
    assert 2 <= x <= 3  # centre of the strip, not its left edge


def test_ignored_pixels_never_count():
    gt = _square()
    ignore = np.zeros_like(gt)
    ignore[:, 45:] = True
    pred = gt.copy()
    pred[:, 45:] = True  # false alarm only inside the ignore band
    pred[15:25, 25:35] = False  # a real miss
    x, y, positive = next_click(gt, pred, ignore)
    assert positive and 25 <= x < 35 and 15 <= y < 25


def test_clicked_pixels_are_not_clicked_again():
    gt = _square()
    nc = np.ones_like(gt)
    x, y, _ = next_click(gt, np.zeros_like(gt), None, nc)
    nc[int(y), int(x)] = False
    x2, y2, _ = next_click(gt, np.zeros_like(gt), None, nc)
    assert (x2, y2) != (x, y)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        next_click(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def test_noc():
    assert noc([0.5, 0.86, 0.91], 0.85) == 2
    assert noc([0.5, 0.86, 0.91], 0.90) == 3
    assert noc([0.5, 0.6], 0.90, max_clicks=20) == 20


class _Oracle:
    """Grows the previous mask (from mask_input) by the ground truth in a 9x9 square at the
    last click: a stand-in segmenter that depends on mask_input being fed back."""

    name, model_key = "oracle", "oracle"

    def __init__(self, gt: np.ndarray):
        self.gt, self.mask_inputs = gt, []

    def decode(self, embedding, points=None, labels=None, box=None, mask_input=None):
        self.mask_inputs.append(mask_input)
        m = np.zeros(embedding.image_size, bool) if mask_input is None else mask_input > 0
        x, y = (int(v) for v in points[-1])
        win = (slice(max(0, y - 4), y + 5), slice(max(0, x - 4), x + 5))
        m[win] = self.gt[win]
        return DecodeResult(m, 1.0, logits=np.where(m, 1.0, -1.0).astype(np.float32))


def test_run_clicks_accumulates_and_feeds_logits_back():
    gt = _square(40, 60, 10, 28, 20, 38)
    seg = _Oracle(gt)
    emb = Embedding("oracle", gt.shape, {})
    out = run_clicks(seg, emb, gt, None, max_clicks=20, target_iou=0.99)
    ious = [i for i, _ in out]
    assert ious[-1] >= 0.99 and len(out) < 20
    assert all(b > a for a, b in zip(ious, ious[1:], strict=False))  # every click adds object
    assert seg.mask_inputs[0] is None and seg.mask_inputs[1] is not None
    assert all(lat >= 0 for _, lat in out)
    out2 = run_clicks(_Oracle(gt), emb, gt, None, max_clicks=3, target_iou=None)
    assert len(out2) == 3
    no_prev = run_clicks(_Oracle(gt), emb, gt, None, max_clicks=20, use_prev_mask=False)
    assert max(i for i, _ in no_prev) < 0.99  # without the fed-back mask it never accumulates
