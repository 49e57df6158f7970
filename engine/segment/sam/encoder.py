"""SAM's image encoder prepared for inference: BatchNorms folded into their convolutions.

MobileSAM's TinyViT encoder is built of ``Conv2d_BN`` blocks, a bias-free convolution
followed by a ``BatchNorm2d``. In eval mode each pair is a single affine map, so
``inference_encoder`` folds every pair into one convolution with a bias
(``torch.nn.utils.fusion.fuse_conv_bn_eval``) in a private copy of the encoder, and stores
that copy channels-last, the layout oneDNN's CPU convolutions run fastest on. On the
2-core development machine this takes a 1024x1024 vit_t embedding from ~1.0 s to ~0.6 s.

The caller's model is never modified. Encoders without such pairs (ViT-B/L/H) are returned
as they are, with no copy. Outputs equal the original encoder's to float32 rounding
(~1e-5 on embeddings of magnitude ~4; tests/engine/segment/sam/test_encoder.py).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from engine.segment.sam.fast_path import is_disabled


def _is_conv_bn(module: nn.Module) -> bool:
    """A ``Conv2d_BN``-style block: child ``c`` a Conv2d, child ``bn`` a BatchNorm2d."""
    conv, bn = getattr(module, "c", None), getattr(module, "bn", None)
    return isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)


def inference_encoder(encoder: nn.Module) -> nn.Module:
    """``encoder`` (a SAM ``image_encoder``) -> an equivalent encoder for inference.

    Input and output are as the original's: Bx3x1024x1024 float32 (normalised, padded) ->
    Bx256x64x64 float32. Inputs may be passed channels-last (``embed_input`` does).
    With the ``encoder`` fast path disabled (``fast_path``) the encoder is returned as is.
    """
    if is_disabled("encoder") or not any(_is_conv_bn(m) for m in encoder.modules()):
        return encoder
    fused = copy.deepcopy(encoder).eval()
    for module in list(fused.modules()):
        if _is_conv_bn(module):
            module.c = fuse_conv_bn_eval(module.c, module.bn)
            module.bn = nn.Identity()
    return fused.to(memory_format=torch.channels_last)


def embed_input(x: torch.Tensor) -> torch.Tensor:
    """A preprocessed Bx3xHxW batch in the memory layout ``inference_encoder`` prefers."""
    if is_disabled("encoder"):
        return x
    return x.contiguous(memory_format=torch.channels_last)
