"""FullResStats against SAM's own postprocessing (two bilinear interpolations in torch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from segment_anything.utils.amg import batched_mask_to_box

from engine.segment.sam.upsample import FullResStats

GEOMETRIES = [((683, 1024), (1200, 1800)), ((1024, 768), (400, 300)), ((1024, 1024), (97, 97))]


def _logits(seed: int) -> torch.Tensor:
    """Smooth blobs, a noisy map, a constant positive and a constant negative map."""
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.randn(4, 1, 12, 12, generator=g), (256, 256), mode="bicubic")
    noisy = torch.randn(1, 1, 256, 256, generator=g) * 3
    const = torch.tensor([5.0, -5.0]).reshape(2, 1, 1, 1).expand(2, 1, 256, 256)
    return torch.cat([smooth[:, 0] * 4, noisy[:, 0], const[:, 0]])


def _reference(
    lg: torch.Tensor, input_size: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    m = F.interpolate(lg[:, None], (1024, 1024), mode="bilinear", align_corners=False)
    m = m[..., : input_size[0], : input_size[1]]
    return F.interpolate(m, size, mode="bilinear", align_corners=False)[:, 0]


@pytest.mark.parametrize(("input_size", "size"), GEOMETRIES)
def test_stability_and_boxes_match_full_resolution(
    input_size: tuple[int, int], size: tuple[int, int]
) -> None:
    lg = _logits(0)
    stab, boxes = FullResStats(input_size, size)(lg, 1.0)
    full = _reference(lg, input_size, size)
    lo, hi = (full > -1).flatten(1).sum(1), (full > 1).flatten(1).sum(1)
    ref = (hi.float() / lo.float()).numpy()
    assert np.array_equal(np.isnan(ref), np.isnan(stab.numpy()))
    assert np.nanmax(np.abs(ref - stab.numpy())) < 1e-4
    assert torch.equal(boxes, batched_mask_to_box(full > 0))


@pytest.mark.parametrize(("input_size", "size"), GEOMETRIES)
def test_mask_matches_postprocess_then_threshold(
    input_size: tuple[int, int], size: tuple[int, int]
) -> None:
    lg = _logits(1)
    up = FullResStats(input_size, size)
    full = _reference(lg, input_size, size)
    for i in range(len(lg)):
        ours = up.mask(lg[i], 0.0)
        assert ours.shape == size and ours.dtype == bool
        differ = int((ours != (full[i] > 0).numpy()).sum())
        assert differ <= max(4, ours.size // 100_000)  # float32 ties on the threshold only
    assert up.mask(lg[-2]).all() and not up.mask(lg[-1]).any()  # filled blocks


def test_negative_offset_is_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        FullResStats((64, 64), (64, 64))(torch.zeros(1, 256, 256), -1.0)


def test_single_threaded_stats_equal_the_parallel_kernel() -> None:
    lg = _logits(2)
    stats = FullResStats((683, 1024), (1200, 1800))
    stab_p, boxes_p = stats(lg, 1.0, parallel=True)
    stab_s, boxes_s = stats(lg, 1.0, parallel=False)
    torch.testing.assert_close(stab_s, stab_p, equal_nan=True, rtol=0, atol=0)
    assert torch.equal(boxes_s, boxes_p)
