"""The inference encoder (BatchNorms folded, channels-last) equals the original encoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.segment.sam.encoder import embed_input, inference_encoder
from engine.segment.sam.models import random_sam


@pytest.fixture(scope="module")
def encoder() -> nn.Module:
    """vit_t's TinyViT with every BatchNorm's statistics and affine made non-trivial."""
    enc = random_sam("vit_t", seed=3).image_encoder
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return enc.eval()


def test_folds_every_batchnorm_and_matches(encoder: nn.Module) -> None:
    fused = inference_encoder(encoder)
    assert fused is not encoder
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = encoder(x)
        out = fused(embed_input(x))
    assert out.shape == ref.shape == (1, 256, 64, 64)
    scale = float(ref.abs().max())
    assert float((out - ref).abs().max()) <= 1e-4 * max(scale, 1.0)


def test_leaves_the_callers_model_alone(encoder: nn.Module) -> None:
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in encoder.modules())
    inference_encoder(encoder)
    assert n_bn > 0
    assert sum(isinstance(m, nn.BatchNorm2d) for m in encoder.modules()) == n_bn


def test_encoder_without_conv_bn_pairs_is_returned_as_is() -> None:
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.GELU())  # not a pair
    assert inference_encoder(plain) is plain
