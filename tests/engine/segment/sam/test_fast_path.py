"""Each fast-path switch falls back to a simple path that gives the generator's results.

The automatic mask generator runs on one downscaled photo with seeded random vit_t weights
(no thresholds, no suppression: every candidate is a record), once with every piece on and
once with each component disabled; the records must agree candidate by candidate, and the
simple path must really run (its marker is observed), so a switch that does nothing fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.masks import mask_iou
from engine.segment.sam import decoder_lowrank, encoder, upsample
from engine.segment.sam.amg import FastAutomaticMaskGenerator
from engine.segment.sam.fast_path import COMPONENTS, fast_path_disabled, is_disabled
from engine.segment.sam.models import random_sam
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.set_num_threads(2)
    return random_sam("vit_t", seed=11, iou_offset=0.5)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    img = Image.open(SHARED_DATA / "samples" / "dog.jpg").convert("RGB")
    img.thumbnail((160, 160))
    return np.asarray(img)


def _generate(model: torch.nn.Module, image: np.ndarray) -> list[dict]:
    params = {"points_per_side": 3, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    return FastAutomaticMaskGenerator(model, box_nms_thresh=1.0, **params).generate(image)


@pytest.fixture(scope="module")
def baseline(model: torch.nn.Module, image: np.ndarray) -> list[dict]:
    return _generate(model, image)


def _spy(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, calls: list[str]) -> None:
    real = getattr(owner, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


# what runs only on each component's simple path
_MARKERS = {
    "encoder": None,  # checked directly below: the encoder is returned unfused
    "decoder": (decoder_lowrank.LowRankMaskDecoder, "_transformer_dense"),
    "lowrank": (decoder_lowrank.LowRankMaskDecoder, "transformer"),
    "upsample": (upsample.ReferenceStats, "__call__"),
}


@pytest.mark.parametrize("component", COMPONENTS)
def test_disabled_component_gives_the_same_records(
    model: torch.nn.Module,
    image: np.ndarray,
    baseline: list[dict],
    component: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    marker = _MARKERS[component]
    if marker is not None:
        _spy(monkeypatch, *marker, calls)
    with fast_path_disabled({component}):
        assert is_disabled(component)
        got = _generate(model, image)
        if component == "encoder":
            assert encoder.inference_encoder(model.image_encoder) is model.image_encoder
    assert not is_disabled(component)
    if marker is not None:
        assert calls, f"the {component} fallback never ran"
    assert len(got) == len(baseline) > 0
    for a, b in zip(baseline, got, strict=True):
        assert a["point_coords"] == b["point_coords"]
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= 1e-3
        assert mask_iou(a["segmentation"], b["segmentation"]) >= 0.99
        if np.isfinite(a["stability_score"]):
            assert abs(a["stability_score"] - b["stability_score"]) <= 1e-2


def test_reference_stats_equal_full_res_stats() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 256, 256, generator=gen) * 4
    fast = upsample.FullResStats((768, 1024), (90, 120))
    ref = upsample.ReferenceStats((768, 1024), (90, 120), block=2)
    stab_f, box_f = fast(logits, 1.0)
    stab_r, box_r = ref(logits, 1.0)
    torch.testing.assert_close(stab_r, stab_f, atol=1e-3, rtol=0)
    assert (box_r - box_f).abs().max() <= 1
    agree = (ref.mask(logits[0]) == fast.mask(logits[0].numpy())).mean()
    assert agree > 0.999
    with pytest.raises(ValueError, match="offset must be >= 0"):
        ref(logits, -1.0)


def test_unknown_component_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="choose from encoder, decoder"), fast_path_disabled({"x"}):
        pass
    assert not any(is_disabled(c) for c in COMPONENTS)
