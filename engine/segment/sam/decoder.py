"""A refactored SAM mask decoder: same weights, same outputs, far less work per prompt.

SAM's ``MaskDecoder`` copies the 256x64x64 image embedding once per prompt and runs a
two-way transformer whose image-side projections (4096 tokens x 256 -> 128) dominate the
cost. With many prompts on one image (automatic mask generation) most of that work is
shared or can be re-associated exactly:

* layer 1 sees the same image tokens for every prompt, so its image-side key/value
  (token->image) and query (image->token) projections are computed once per image;
* every later attention over image tokens is re-associated so that the per-prompt work
  is a product with the *few* prompt tokens: scores = (q W_k) X^T instead of
  q (X W_k)^T, values = (A X) W_v instead of A (X W_v), image->token outputs as
  sum_h A_h (v_h W_o,h);
* the 256x256 mask upscaling runs only for prompts whose masks are still wanted.

All of this is exact in real arithmetic (softmax ignores the per-row constant q.b_k, and
attention rows sum to 1); in float32 results agree with the reference to ~1e-5.

Shapes: image tokens N = 64*64, channels C = 256, prompt tokens T = 5 output tokens plus
the sparse prompt embeddings. All tensors float32 on the model's device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

# oneDNN's linear with a fused bias + exact-GELU epilogue (x86 CPU builds of torch): the
# second upscaling ConvT and its GELU in one pass over the output, equal to float rounding to
# addmm + gelu (tests/engine/segment/sam/test_decoder.py)
_FUSED_LINEAR_GELU = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, "_linear_pointwise"
)


@dataclass
class ImageContext:
    """Per-image precompute shared by every prompt (batch dimension 1)."""

    x0: Tensor  # 1xNxC image tokens + dense prompt embedding
    pe: Tensor  # 1xNxC positional encoding
    k1: Tensor  # 1xHxdxN layer-1 token->image keys
    v1: Tensor  # 1xHxNxd layer-1 token->image values
    q1: Tensor  # 1xHxdxN layer-1 image->token queries
    kp2: Tensor  # 1xHxdxN layer-2 token->image key projection of the PE (no bias)
    qp2: Tensor  # 1xHxdxN layer-2 image->token query projection of the PE (no bias)
    kpf: Tensor  # 1xHxdxN final token->image key projection of the PE (no bias)
    hw: tuple[int, int]


def _heads(x: Tensor, h: int) -> Tensor:
    """BxNx(h*d) -> BxhxNxd."""
    b, n, c = x.shape
    return x.reshape(b, n, h, c // h).transpose(1, 2)


def _keys(x: Tensor, h: int) -> Tensor:
    """1xNx(h*d) -> 1xhxdxN contiguous: the layout every per-prompt product with a shared
    image-side tensor reads (rows of N along which MKL's small GEMMs run fastest)."""
    _, n, c = x.shape
    return x[0].T.reshape(h, c // h, n)[None].contiguous()


def _merge(x: Tensor) -> Tensor:
    """BxhxTxd -> BxTx(h*d)."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


@numba.njit(nogil=True, cache=True)
def _pixel_grid_kernel(src: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``FastMaskDecoder._pixel_grid`` for one prompt: src (side*side*16)xM -> out Mx4sx4s.

    A plain loop: torch's copy through the 8-d permuted view costs 13x as much.
    """
    m = src.shape[1]
    side = out.shape[1] // 4
    for k in range(m):
        for i in range(side):
            for a1 in range(2):
                for a2 in range(2):
                    y = i * 4 + 2 * a1 + a2
                    for j in range(side):
                        r = (i * side + j) * 16 + a1 * 8 + a2 * 2  # b1 = b2 = 0
                        out[k, y, j * 4] = src[r, k]
                        out[k, y, j * 4 + 1] = src[r + 1, k]  # b2 = 1
                        out[k, y, j * 4 + 2] = src[r + 4, k]  # b1 = 1
                        out[k, y, j * 4 + 3] = src[r + 5, k]


def is_exact_gelu(act: nn.Module) -> bool:
    """Whether ``act`` is the erf GELU (the one oneDNN's fused linear epilogue computes)."""
    return isinstance(act, nn.GELU) and act.approximate == "none"


def upscale_norm_act(
    y: Tensor,
    b1: Tensor,
    ln: nn.Module,
    act: nn.Module,
    us: Tensor | None = None,
    alpha: Tensor | None = None,
) -> Tensor:
    """The upscaling between its two transposed convolutions, for one tile of tokens.

    y: tokens x (G*c) first ConvT output without its bias b1 (G*c); ``us`` (tokens x G*c)
    scaled per token by ``alpha`` (tokens) is added when both are given. Returns
    (tokens*G) x c: act(LayerNorm ``ln`` over each token's G groups of c channels).
    """
    c = ln.weight.shape[0]
    v = y + b1 if us is None or alpha is None else torch.addcmul(y + b1, us, alpha[:, None])
    return act(F.layer_norm(v.reshape(-1, c), (c,), ln.weight, ln.bias, ln.eps))


def _per_prompt_bmm(x: Tensor, w: Tensor, out: Tensor | None, accumulate: bool = False) -> Tensor:
    """x BxhxTxk times one hxkxM tensor shared by all prompts -> BxhxTxM contiguous
    (written into ``out`` when given: contiguous per prompt, e.g. a view into a buffer;
    added to it with ``accumulate``).

    On CPU each head is one bmm over prompts written in place (the head's kxM slice of
    ``w`` stays in cache across the prompts, and no head-major result is transposed back,
    a copy as large as the result); on other devices one bmm over all prompts and one copy
    (fewer, larger launches).
    """
    b, h, t, k = x.shape
    if out is None:
        out = torch.empty(b, h, t, w.shape[-1], dtype=x.dtype, device=x.device)
    if x.device.type == "cpu":
        for i in range(h):
            if accumulate:
                out[:, i].baddbmm_(x[:, i], w[i].expand(b, -1, -1))
            else:
                torch.bmm(x[:, i], w[i].expand(b, -1, -1), out=out[:, i])
    else:
        res = torch.matmul(x.transpose(0, 1).reshape(h, b * t, k), w).view(h, b, t, -1)
        if accumulate:
            out += res.transpose(0, 1)
        else:
            out.copy_(res.transpose(0, 1))
    return out


class FastMaskDecoder:
    """Wraps a loaded ``Sam`` model's prompt-side modules; holds no copies of the weights."""

    def __init__(self, sam: nn.Module) -> None:
        self.md = sam.mask_decoder
        self.tr = self.md.transformer
        self.heads = self.tr.layers[0].cross_attn_token_to_image.num_heads

    # ----------------------------------------------------------------------------- image
    def _pe_parts(self, image_pe: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """PE-only projections; the PE is a model constant, so they are computed once."""
        cached = getattr(self, "_pe_cache", None)
        if (
            cached is not None
            and cached[0].shape == image_pe.shape
            and torch.equal(cached[0], image_pe)
        ):
            return cached[1]
        h = self.heads
        l2 = self.tr.layers[1]
        pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        kp2 = _keys(pe @ l2.cross_attn_token_to_image.k_proj.weight.T, h)
        qp2 = _keys(pe @ l2.cross_attn_image_to_token.q_proj.weight.T, h)
        kpf = _keys(pe @ self.tr.final_attn_token_to_image.k_proj.weight.T, h)
        parts = (pe, kp2, qp2, kpf)
        self._pe_cache = (image_pe, parts)
        return parts

    @torch.inference_mode()
    def prepare(self, image_embeddings: Tensor, image_pe: Tensor, dense: Tensor) -> ImageContext:
        """image_embeddings 1xCxhxw, image_pe 1xCxhxw, dense 1xCxhxw (no-mask or mask embedding)."""
        h = self.heads
        _, _, hh, ww = image_embeddings.shape
        pe, kp2, qp2, kpf = self._pe_parts(image_pe)
        x0 = (image_embeddings + dense).flatten(2).transpose(1, 2).contiguous()
        l1 = self.tr.layers[0]
        a = l1.cross_attn_token_to_image
        k1 = _keys(a.k_proj(x0 + pe), h)
        v1 = _heads(a.v_proj(x0), h)
        q1 = _keys(l1.cross_attn_image_to_token.q_proj(x0 + pe), h)
        return ImageContext(x0, pe, k1, v1, q1, kp2, qp2, kpf, (hh, ww))

    # ------------------------------------------------------------------------ attention
    def _shared(self, x: Tensor, shared: Tensor, out: Tensor | None = None) -> Tensor:
        """x BxhxTxd times a shared 1xhxdxN tensor (``_keys``) -> BxhxTxN (into ``out``)."""
        return _per_prompt_bmm(x, shared[0], out)

    def _shared_add(self, x: Tensor, shared: Tensor, out: Tensor) -> None:
        """out BxhxTxN (contiguous per prompt) += x BxhxTxd times a shared 1xhxdxN tensor."""
        _per_prompt_bmm(x, shared[0], out, accumulate=True)

    def _values(self, probs: Tensor, shared: Tensor) -> Tensor:
        """probs BxhxTxN times a shared 1xhxNxd tensor -> BxhxTxd."""
        return _per_prompt_bmm(probs, shared[0], None)

    def _token_to_image(self, a: nn.Module, q_in: Tensor, x: Tensor, kp: Tensor) -> Tensor:
        """Tokens attend to per-prompt image tokens ``x`` (BxNxC); returns BxTxC (out_proj applied)."""
        h = self.heads
        b, t, _ = q_in.shape
        n, c = x.shape[1], x.shape[2]
        qh = _heads(a.q_proj(q_in), h)  # BxhxTxd
        d = qh.shape[-1]
        qh = qh * (1.0 / math.sqrt(d))  # scale the few queries, not the NxT scores
        wk = a.k_proj.weight.view(h, d, c)
        qf = (qh @ wk).reshape(b, h * t, c)  # fold W_k into the queries
        s = torch.bmm(qf, x.transpose(1, 2)).view(b, h, t, n)
        s += self._shared(qh, kp)
        s = torch.softmax(s, dim=-1)
        ax = torch.bmm(s.view(b, h * t, n), x).view(b, h, t, c)  # fold W_v after the average
        wv = a.v_proj.weight.view(h, d, c)
        out = ax @ wv.transpose(1, 2) + a.v_proj.bias.view(h, 1, d)
        return a.out_proj(_merge(out))

    def _image_to_token(
        self, a: nn.Module, x: Tensor | None, qimg: Tensor, q_in: Tensor, v_in: Tensor
    ) -> Tensor:
        """Image tokens attend to prompt tokens; returns the BxNxC update (out_proj applied).

        ``qimg`` is the image-side query: either precomputed heads (1xhxdxN, layer 1, x None)
        or the PE part of the projection (1xhxdxN without bias) to add to ``x @ W_q``.
        Scores are kept as BxhxTxN so the softmax over the T prompt tokens is vectorised.
        """
        h = self.heads
        b, t, c = q_in.shape
        kh = _heads(a.k_proj(q_in), h)  # BxhxTxd
        vh = _heads(a.v_proj(v_in), h)
        d = kh.shape[-1]
        kh = kh * (1.0 / math.sqrt(d))  # scale the few keys, not the NxT scores
        n = qimg.shape[-1]
        s = self._shared(kh, qimg)  # BxhxTxN
        if x is not None:
            wq = a.q_proj.weight.view(h, d, c)
            kq = (kh @ wq).reshape(b, h * t, c)  # fold W_q into the keys
            bias = (kh @ a.q_proj.bias.view(h, d, 1)).view(b, h * t, 1)
            s = torch.baddbmm(bias, kq, x.transpose(1, 2)).view(b, h, t, n) + s
        s = torch.softmax(s, dim=2)
        wo = a.out_proj.weight.view(c, h, d).permute(1, 2, 0)  # hxdxC
        m = (vh @ wo).reshape(b, h * t, c)  # per-head value through W_o
        probs = s.reshape(b, h * t, n).transpose(1, 2)
        return torch.baddbmm(a.out_proj.bias.expand(b, 1, c), probs, m)

    # -------------------------------------------------------------------------- forward
    def _layer1_tokens(self, ctx: ImageContext, t0: Tensor) -> Tensor:
        """Layer 1's token side (BxTxC -> BxTxC); its image side is the same for every prompt."""
        l1 = self.tr.layers[0]
        q = l1.norm1(l1.self_attn(q=t0, k=t0, v=t0))
        a = l1.cross_attn_token_to_image
        qh = _heads(a.q_proj(q + t0), self.heads)
        b, h, t, d = qh.shape
        # head-major throughout (hx(BT)xN): one bmm over heads with all prompts' rows,
        # a contiguous softmax, and only the small hx(BT)xd result is transposed back
        qh = (qh * (1.0 / math.sqrt(d))).transpose(0, 1).reshape(h, b * t, d)
        s = torch.softmax(torch.matmul(qh, ctx.k1[0]), dim=-1)
        o = torch.matmul(s, ctx.v1[0]).view(h, b, t, d).permute(1, 2, 0, 3)
        q = l1.norm2(q + a.out_proj(o.reshape(b, t, h * d)))
        return l1.norm3(q + l1.mlp(q))

    @torch.inference_mode()
    def transformer(self, ctx: ImageContext, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """tokens BxTxC (output tokens + sparse prompts) -> (queries BxKxC, image tokens BxNxC).

        K = 1 + num_mask_tokens: the final states of the IoU and mask tokens (all the
        decoder's heads read); the prompt tokens' final states are not computed.
        """
        l1, l2 = self.tr.layers[0], self.tr.layers[1]
        t0 = tokens
        q = self._layer1_tokens(ctx, t0)
        upd = self._image_to_token(l1.cross_attn_image_to_token, None, ctx.q1, q + t0, q)
        x1 = l1.norm4(upd.add_(ctx.x0))
        # layer 2
        qq = q + t0
        q = l2.norm1(q + l2.self_attn(q=qq, k=qq, v=q))
        q = l2.norm2(q + self._token_to_image(l2.cross_attn_token_to_image, q + t0, x1, ctx.kp2))
        q = l2.norm3(q + l2.mlp(q))
        upd = self._image_to_token(l2.cross_attn_image_to_token, x1, ctx.qp2, q + t0, q)
        x2 = l2.norm4(upd.add_(x1))
        del x1, upd
        # final token->image attention, for the output tokens only: the decoder reads the
        # IoU token and the mask tokens, never the prompt tokens' final states
        fa = self.tr.final_attn_token_to_image
        k = 1 + self.md.num_mask_tokens
        q, t0 = q[:, :k], t0[:, :k]
        q = self.tr.norm_final_attn(q + self._token_to_image(fa, q + t0, x2, ctx.kpf))
        return q, x2

    @torch.inference_mode()
    def iou(self, queries: Tensor) -> Tensor:
        """queries BxTxC -> predicted IoU Bx(num_mask_tokens) (index 0 = single-mask output)."""
        return self.md.iou_prediction_head(queries[:, 0, :])

    def _upscale_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Both 2x2/2 ConvTs of ``output_upscaling`` as channels-last matmuls:
        (w1 Cx4*c1, b1 4*c1, w2 c1x4*c2, b2 4*c2), output columns ordered (a, b, out)."""
        ct1, ct2 = self.md.output_upscaling[0], self.md.output_upscaling[3]
        w1 = ct1.weight.permute(0, 2, 3, 1).reshape(ct1.in_channels, 4 * ct1.out_channels)
        w2 = ct2.weight.permute(0, 2, 3, 1).reshape(ct2.in_channels, 4 * ct2.out_channels)
        return w1, ct1.bias.repeat(4), w2, ct2.bias.repeat(4)

    def _upscale_tile(
        self,
        y: Tensor,
        b1: Tensor,
        w2: Tensor,
        b2: Tensor,
        hyper: Tensor,
        out: Tensor,
        us: Tensor | None = None,
        alpha: Tensor | None = None,
    ) -> None:
        """The upscaling after its first ConvT's matmul, for one tile of image tokens.

        y: rows x 4*c1 (ConvT1 output without its bias b1; plus ``us`` scaled per row by
        ``alpha`` when given, the low-rank decoder's shared part); w2: c1 x 4*c2 (second
        ConvT as a matmul); hyper: c2xM hypernetwork outputs; out: (16*rows)xM logits, pixel
        order (i, j, a1, b1, a2, b2).
        """
        up = self.md.output_upscaling
        ln, act1, act2 = up[1], up[2], up[4]
        y = upscale_norm_act(y, b1, ln, act1, us, alpha)
        if _FUSED_LINEAR_GELU and is_exact_gelu(act2) and y.device.type == "cpu":
            z = torch.ops.mkldnn._linear_pointwise(y, w2.T, b2, "gelu", [], "none")
        else:
            z = act2(torch.addmm(b2, y, w2))
        torch.mm(z.view(-1, hyper.shape[0]), hyper, out=out)

    @staticmethod
    def _pixel_grid(logits: Tensor) -> Tensor:
        """Bx(N*16)xM logits in pixel order (i, j, a1, b1, a2, b2) -> BxMx(4*side)x(4*side):
        rows i*4+2*a1+a2, columns j*4+2*b1+b2 (side = sqrt(N))."""
        b, rows, m = logits.shape
        side = int(round(math.sqrt(rows // 16)))
        if logits.device.type == "cpu" and logits.dtype == torch.float32:
            src = logits.contiguous().numpy()
            out = np.empty((b, m, side * 4, side * 4), dtype=np.float32)
            for i in range(b):
                _pixel_grid_kernel(src[i], out[i])
            return torch.from_numpy(out)
        grid = logits.view(b, side, side, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return grid.reshape(b, m, side * 4, side * 4)

    @torch.inference_mode()
    def masks(self, queries: Tensor, x2: Tensor, which: list[int], tile: int = 1024) -> Tensor:
        """Low-res mask logits Bxlen(which)x256x256 for mask tokens ``which`` (0..3).

        ``output_upscaling`` (ConvT 2x2/2, LayerNorm2d, GELU, ConvT 2x2/2, GELU) has no
        spatial overlap, so it is computed channels-last as two matmuls on x2 (BxNxC,
        N=64*64), ``tile`` image tokens at a time so the 4x and 16x larger intermediates
        stay in cache, and reduced against the hypernetwork weights before the next tile.
        """
        b, n, _ = x2.shape
        w1, b1, w2, b2 = self._upscale_weights()
        hyper = torch.stack(
            [self.md.output_hypernetworks_mlps[i](queries[:, 1 + i, :]) for i in which], dim=2
        )  # Bx32xM
        logits = torch.empty(b, n * 16, len(which), dtype=x2.dtype, device=x2.device)
        for i in range(b):
            for r in range(0, n, tile):
                e = min(r + tile, n)
                y = torch.mm(x2[i, r:e], w1)
                self._upscale_tile(y, b1, w2, b2, hyper[i], logits[i, r * 16 : e * 16])
        return self._pixel_grid(logits)
