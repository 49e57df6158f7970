"""Prompts as superpixels: clicks (a later click wins), boxes (at least one superpixel) and
``mask_input`` (per-superpixel logits or any 2-D map)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.segment.classical.prompts import box_nodes, click_nodes, mask_prior, scales
from engine.segment.protocol import PromptError


@pytest.fixture
def f() -> dict:
    """A 4x4 working image (the original is 8x8) of four 2x2 superpixels."""
    sp = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 2, axis=0), 2, axis=1)
    return {
        "sp": sp,
        "area": np.full(4, 4),
        "cx": np.array([1.0, 3.0, 1.0, 3.0]),
        "cy": np.array([1.0, 1.0, 3.0, 3.0]),
    }


def test_scales_and_clicks(f: dict) -> None:
    assert scales(f, (8, 8)) == (0.5, 0.5)
    pos, neg = click_nodes(
        f, (8, 8), np.array([[1.0, 1.0], [7.0, 7.0], [1.5, 1.5]]), np.array([1, 1, 0])
    )
    assert pos.tolist() == [3] and neg.tolist() == [0]  # the later negative click wins
    none_pos, none_neg = click_nodes(f, (8, 8), None, None)
    assert len(none_pos) == len(none_neg) == 0


def test_box_nodes(f: dict) -> None:
    assert box_nodes(f, (8, 8), None) is None
    assert box_nodes(f, (8, 8), np.array([0.0, 0.0, 8.0, 4.0])).tolist() == [
        True,
        True,
        False,
        False,
    ]
    thin = box_nodes(f, (8, 8), np.array([6.0, 6.0, 6.5, 6.5]))  # no centre inside
    assert thin.tolist() == [False, False, False, True]


def test_mask_prior(f: dict) -> None:
    assert mask_prior(f, None) is None
    assert mask_prior(f, np.array([1.0, -1.0, 0.5, -2.0])).tolist() == [True, False, True, False]
    hw = np.full((8, 8), -1.0, np.float32)
    hw[:, 4:] = 1.0
    assert mask_prior(f, hw[None]).tolist() == [False, True, False, True]
    with pytest.raises(PromptError, match="4 superpixels"):
        mask_prior(f, np.zeros(7))
    with pytest.raises(PromptError, match="finite 2-D map"):
        mask_prior(f, np.full((8, 8), np.nan))
