"""LowRankMaskDecoder gives SAM's MaskDecoder outputs for many prompts on one image.

Reference: ``segment_anything``'s own ``MaskDecoder`` (multimask output) on the same random
vit_t weights, with the prompt encoder's point embeddings, on image embeddings with a
non-zero mean and a spread of scales (so LayerNorm statistics taken in low-rank form are
exercised where cancellation would show).
"""

from __future__ import annotations

import pytest
import torch

from engine.segment.sam.decoder_lowrank import LowRankMaskDecoder
from engine.segment.sam.models import random_sam


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.set_num_threads(2)
    return random_sam("vit_t", seed=3, iou_offset=0.5)


def _prompts(model: torch.nn.Module, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(n, 1, 2, generator=g) * 1024
    labels = torch.ones(n, 1, dtype=torch.int)
    sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    return sparse, dense


@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (4.0, 2.0)])
def test_matches_reference_mask_decoder(
    model: torch.nn.Module, scale: float, offset: float
) -> None:
    g = torch.Generator().manual_seed(11)
    emb = torch.randn(1, 256, 64, 64, generator=g) * scale + offset
    sparse, dense = _prompts(model, 6, seed=5)
    pe = model.prompt_encoder.get_dense_pe()
    md = model.mask_decoder
    with torch.inference_mode():
        ref_masks, ref_iou = md(
            image_embeddings=emb,
            image_pe=pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        dec = LowRankMaskDecoder(model)
        ctx = dec.prepare_lowrank(emb, pe, dense[:1])
        out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None].expand(len(sparse), -1, -1), sparse], dim=1)
        q, x2 = dec.transformer_lowrank(ctx, tokens)
        iou = dec.iou(q)[:, 1:]
        keep = torch.zeros(len(sparse), 3, dtype=torch.bool)
        keep[0] = True  # all three tokens
        keep[1, 1] = True  # one token
        keep[3, [0, 2]] = True  # two, rows 2, 4, 5: none
        masks = dec.masks_lowrank(ctx, q, x2, keep, tile=512)
    torch.testing.assert_close(iou, ref_iou, atol=1e-4, rtol=1e-4)
    rows, toks = keep.nonzero().unbind(1)
    assert masks.shape == (len(rows), 256, 256)
    want = ref_masks[rows, toks]
    err = (masks - want).abs().max() / want.abs().max()
    assert err < 1e-4, f"relative mask logit error {err:.2e}"
    # the signs that decide every pixel agree except at exact float ties
    assert ((masks > 0) != (want > 0)).float().mean() < 1e-4


def test_select_keeps_rows(model: torch.nn.Module) -> None:
    emb = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(2))
    sparse, dense = _prompts(model, 4, seed=1)
    md = model.mask_decoder
    dec = LowRankMaskDecoder(model)
    with torch.inference_mode():
        ctx = dec.prepare_lowrank(emb, model.prompt_encoder.get_dense_pe(), dense[:1])
        out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None].expand(len(sparse), -1, -1), sparse], dim=1)
        q, x2 = dec.transformer_lowrank(ctx, tokens)
        rows = torch.tensor([2, 0])
        keep = torch.ones(2, 3, dtype=torch.bool)
        picked = dec.masks_lowrank(ctx, q[rows], x2.select(rows), keep)
        whole = dec.masks_lowrank(ctx, q, x2, torch.ones(4, 3, dtype=torch.bool))
    torch.testing.assert_close(picked, torch.cat([whole[6:9], whole[0:3]]))
