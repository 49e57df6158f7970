"""FastMaskDecoder's CPU fast paths equal the plain torch formulations they replace.

(Its outputs against SAM's own decoder are tested through ``SamSegmenter.decode`` in
tests/engine/segment/sam/test_segmenter.py and through the generator in tests/engine/segment/sam/test_amg.py.)
"""

from __future__ import annotations

import math

import pytest
import torch

import engine.segment.sam.decoder as sam_decoder
from engine.segment.sam.decoder import FastMaskDecoder, _per_prompt_bmm
from engine.segment.sam.models import random_sam


@pytest.fixture(scope="module")
def decoder() -> FastMaskDecoder:
    return FastMaskDecoder(random_sam("vit_t", seed=5))


def _permuted_grid(logits: torch.Tensor) -> torch.Tensor:
    """The pixel order as an 8-d permute (the definition ``_pixel_grid`` implements)."""
    b, rows, m = logits.shape
    side = int(round(math.sqrt(rows // 16)))
    grid = logits.view(b, side, side, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6)
    return grid.reshape(b, m, side * 4, side * 4)


@pytest.mark.parametrize(("side", "m"), [(64, 3), (64, 1), (5, 2)])
def test_pixel_grid_kernel_is_the_permute(side: int, m: int) -> None:
    logits = torch.randn(2, side * side * 16, m, generator=torch.Generator().manual_seed(side))
    assert torch.equal(FastMaskDecoder._pixel_grid(logits), _permuted_grid(logits))


def test_per_prompt_products_equal_one_batched_matmul() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 7, 16, generator=g)
    w = torch.randn(8, 16, 300, generator=g)
    want = torch.matmul(x, w)
    torch.testing.assert_close(_per_prompt_bmm(x, w, None), want)
    buf = torch.zeros(3, 60, 300)  # written into a view of a larger buffer, in place
    out = buf[:, 2:58].view(3, 8, 7, 300)
    assert _per_prompt_bmm(x, w, out) is out
    torch.testing.assert_close(buf[:, 2:58], want.reshape(3, 56, 300))
    assert not buf[:, :2].any() and not buf[:, 58:].any()


def test_fused_linear_gelu_equals_addmm_then_gelu(
    decoder: FastMaskDecoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not sam_decoder._FUSED_LINEAR_GELU:
        pytest.skip("this torch build has no oneDNN linear with a GELU epilogue")
    _, b1, w2, b2 = decoder._upscale_weights()
    g = torch.Generator().manual_seed(1)
    y = torch.randn(1024, 4 * 64, generator=g) * 2
    hyper = torch.randn(32, 3, generator=g)
    fused, plain = torch.empty(1024 * 16, 3), torch.empty(1024 * 16, 3)
    with torch.inference_mode():
        decoder._upscale_tile(y, b1, w2, b2, hyper, fused)
        monkeypatch.setattr(sam_decoder, "_FUSED_LINEAR_GELU", False)
        decoder._upscale_tile(y, b1, w2, b2, hyper, plain)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
