"""SAM's mask decoder for many prompts on one image: per-prompt image tokens kept low-rank.

In SAM's two-way transformer the image tokens change per prompt only through the
image->token attention updates, and those are low-rank: an update is ``P M`` with ``P``
the NxK attention probabilities (K = heads x prompt tokens = 56) and ``M`` their KxC value
rows. The LayerNorms that follow scale each token and shift it along two fixed vectors.
So after layer l the per-prompt image tokens are exactly::

    X = diag(alpha) S + Q^T B          (N x C)

with ``S`` shared by every prompt (the image embedding, scaled per channel), ``alpha`` (N,)
per-token scales, ``Q`` (R x N) coefficients and ``B`` (R x C) rows (R = 58 after layer 1,
117 after layer 2). Every product the decoder needs is taken in that form, never
materialising X: attention scores and values against ``S`` through per-image projections
(``S W^T`` computed once), the rest through the R-dimensional coefficients; LayerNorm
statistics from ``|X_i|^2 = alpha^2 |S_i|^2 + 2 alpha Q_i.(B S_i) + Q_i^T (B B^T) Q_i``,
where ``B S_i`` too comes from per-image projections because every row of ``B`` is a fixed
vector or a value row ``v W_o`` (scaled per channel). The mask upscaling's first
transposed convolution is linear per token, so it is ``alpha (S W_1) + Q^T (B W_1)``.

Per prompt that is ~0.45 GMAC instead of ~0.9 (``FastMaskDecoder``, which materialises X)
or ~1.3 (SAM's ``MaskDecoder``), and no NxC LayerNorm or copy. Exact in real arithmetic;
float32 results agree with the reference to ~1e-5 (tests/engine/segment/sam/test_decoder_lowrank.py).
The per-image precompute is ~1.3 GMAC, so this pays off from a handful of prompts per
image (automatic mask generation); single interactive clicks use ``FastMaskDecoder``.

Shapes: N = 64*64 image tokens, C = 256 channels, h = 8 heads of d = 16 (cross attention
runs at C/2), T prompt tokens (5 output tokens + sparse prompts). float32 throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engine.segment.sam.decoder import FastMaskDecoder, ImageContext, _heads, _keys, _merge
from engine.segment.sam.fast_path import is_disabled


@dataclass
class LowRankContext:
    """Per-image precompute (all shared by every prompt on that image).

    ``U`` = x0 + b_o1 (image tokens plus layer 1's image->token output bias), S1 = U*g1,
    S2 = S1*g2 (g = the image-side LayerNorm weights). ``*_h`` tensors are heads, 1xhxdxN
    (``_keys``) on the score side and 1xhxNxd for the values (vs2_h, vsf_h).
    """

    base: ImageContext
    u_mean: Tensor  # N, row means of U
    u_sq: Tensor  # N, row sums of squares of U
    a1_h: Tensor  # U @ W_o1 (layer-1 value rows . U)
    s1_mean: Tensor  # N
    s1_sq: Tensor  # N
    ks2_h: Tensor  # S1 @ W_k2^T
    vs2_h: Tensor  # S1 @ W_v2^T
    qs2_h: Tensor  # S1 @ W_q2^T
    a2_h: Tensor  # (S1*g1) @ W_o1 (layer-1 value rows, scaled by g1, . S1)
    a3_h: Tensor  # S1 @ W_o2
    s1_fixed: Tensor  # Nx3: S1 . [beta1, g1, b_o2]
    ksf_h: Tensor  # S2 @ W_kf^T
    vsf_h: Tensor  # S2 @ W_vf^T
    us: Tensor  # N x 4*c1: S2 @ W_up1 (first upscaling ConvT, channels-last)


@dataclass
class LowRankTokens:
    """Per-prompt image tokens X_b = diag(alpha_b) S2 + Q_b^T B_b (see module docstring)."""

    alpha: Tensor  # BxN
    q: Tensor  # BxRxN
    b: Tensor  # BxRxC

    def select(self, rows: Tensor) -> LowRankTokens:
        return LowRankTokens(self.alpha[rows], self.q[rows], self.b[rows])


@dataclass
class ReferenceContext:
    """The inputs SAM's own ``MaskDecoder`` takes (``decoder`` fast path disabled), 1xCxhxw."""

    image_embeddings: Tensor
    image_pe: Tensor
    dense: Tensor


@dataclass
class DenseTokens:
    """Per-prompt image tokens materialised, BxNxC (``lowrank`` or ``decoder`` disabled)."""

    x: Tensor

    def select(self, rows: Tensor) -> DenseTokens:
        return DenseTokens(self.x[rows])


class LowRankMaskDecoder(FastMaskDecoder):
    """``FastMaskDecoder`` whose per-prompt image tokens stay in low-rank form."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__(sam)
        l1, l2 = self.tr.layers[0], self.tr.layers[1]
        self.wo1 = self._wo(l1.cross_attn_image_to_token)
        self.wo2 = self._wo(l2.cross_attn_image_to_token)

    def _wo(self, a: nn.Module) -> Tensor:
        """out_proj weight as h x d x C (value heads -> C)."""
        c = a.out_proj.weight.shape[0]
        return a.out_proj.weight.view(c, self.heads, -1).permute(1, 2, 0)

    def _split(self, x: Tensor) -> Tensor:
        """Nx(h*d) -> 1xhxNxd contiguous (value side, read as probs @ values)."""
        return _heads(x[None], self.heads).contiguous()

    def _split_keys(self, x: Tensor) -> Tensor:
        """Nx(h*d) -> 1xhxdxN contiguous (score side, read by ``_shared``)."""
        return _keys(x[None], self.heads)

    # ----------------------------------------------------------------------------- image
    @torch.inference_mode()
    def prepare_lowrank(
        self, image_embeddings: Tensor, image_pe: Tensor, dense: Tensor
    ) -> LowRankContext | ImageContext | ReferenceContext:
        """image_embeddings, image_pe, dense: 1xCxhxw (dense: the no-mask embedding).

        With the ``decoder`` or ``lowrank`` fast path disabled (``fast_path``) this returns
        the context of the simple path (``ReferenceContext`` or ``ImageContext``), which
        ``transformer_lowrank`` and ``masks_lowrank`` then follow.
        """
        if is_disabled("decoder"):
            return ReferenceContext(image_embeddings, image_pe, dense)
        if is_disabled("lowrank"):
            return self.prepare(image_embeddings, image_pe, dense)
        base = self.prepare(image_embeddings, image_pe, dense)
        l1, l2 = self.tr.layers[0], self.tr.layers[1]
        fa = self.tr.final_attn_token_to_image
        i2t1, i2t2 = l1.cross_attn_image_to_token, l2.cross_attn_image_to_token
        g1, be1 = l1.norm4.weight, l1.norm4.bias
        g2 = l2.norm4.weight
        u = base.x0[0] + i2t1.out_proj.bias
        s1 = u * g1
        s2 = s1 * g2
        w1 = self._upscale_weights()[0]
        return LowRankContext(
            base=base,
            u_mean=u.mean(-1),
            u_sq=(u * u).sum(-1),
            a1_h=self._split_keys(u @ i2t1.out_proj.weight),
            s1_mean=s1.mean(-1),
            s1_sq=(s1 * s1).sum(-1),
            ks2_h=self._split_keys(s1 @ l2.cross_attn_token_to_image.k_proj.weight.T),
            vs2_h=self._split(s1 @ l2.cross_attn_token_to_image.v_proj.weight.T),
            qs2_h=self._split_keys(s1 @ i2t2.q_proj.weight.T),
            a2_h=self._split_keys((s1 * g1) @ i2t1.out_proj.weight),
            a3_h=self._split_keys(s1 @ i2t2.out_proj.weight),
            s1_fixed=s1 @ torch.stack([be1, g1, i2t2.out_proj.bias], dim=1),
            ksf_h=self._split_keys(s2 @ fa.k_proj.weight.T),
            vsf_h=self._split(s2 @ fa.v_proj.weight.T),
            us=s2 @ w1,
        )

    # ------------------------------------------------------------------------ attention
    def _rows_through(self, rows: Tensor, weight: Tensor) -> Tensor:
        """rows BxRxC through a (h*d)xC projection weight -> BxhxRxd."""
        b, r, _ = rows.shape
        return (rows @ weight.T).view(b, r, self.heads, -1).transpose(1, 2)

    def _t2i(
        self,
        a: nn.Module,
        q_in: Tensor,
        x: LowRankTokens,
        ks: Tensor,
        vs: Tensor,
        kp: Tensor,
    ) -> Tensor:
        """Prompt tokens (BxTxC) attend to low-rank image tokens; returns BxTxC after out_proj.

        ``ks``/``vs`` are the shared image part through W_k/W_v, ``kp`` the PE through W_k.
        The key bias is dropped: it adds a per-row constant that softmax ignores.
        """
        h = self.heads
        b, t, _ = q_in.shape
        n = x.alpha.shape[1]
        qh = _heads(a.q_proj(q_in), h)
        qh = qh * (1.0 / math.sqrt(qh.shape[-1]))
        bk = self._rows_through(x.b, a.k_proj.weight)  # BxhxRxd
        kq = (qh @ bk.transpose(2, 3)).reshape(b, h * t, -1)  # Bx(hT)xR
        s = self._shared(qh, ks).mul_(x.alpha[:, None, None, :])  # BxhxTxN
        self._shared_add(qh, kp, s)
        s.view(b, h * t, n).baddbmm_(kq, x.q)
        s = torch.softmax(s, dim=-1)
        out = self._values(s * x.alpha[:, None, None, :], vs)  # BxhxTxd
        # BxhxTxR, taken as (Q S^T)^T: MKL runs this orientation up to 30% faster here
        sq = torch.bmm(x.q, s.view(b, h * t, n).transpose(1, 2)).transpose(1, 2)
        sq = sq.reshape(b, h, t, -1)
        out += sq @ self._rows_through(x.b, a.v_proj.weight)
        out += a.v_proj.bias.view(h, 1, -1)
        return a.out_proj(_merge(out))

    def _i2t_probs(
        self,
        a: nn.Module,
        q_in: Tensor,
        x: LowRankTokens | None,
        qs: Tensor,
        qp: Tensor | None,
        out: Tensor,
    ) -> None:
        """Image tokens attend to prompt tokens ``q_in`` (BxTxC); writes the probabilities
        into ``out`` (Bx(hT)xN, may be a view into the coefficient buffer).

        Layer 1 (``x`` and ``qp`` None): ``qs`` is the full precomputed query heads. Later
        layers: ``qs`` is S's part and ``qp`` the PE's (no bias); the query bias is added here.
        """
        h = self.heads
        b, t, _ = q_in.shape
        kh = _heads(a.k_proj(q_in), h)
        kh = kh * (1.0 / math.sqrt(kh.shape[-1]))
        s = self._shared(kh, qs, out=out.view(b, h, t, -1))  # BxhxTxN, in the buffer
        if x is not None and qp is not None:
            s.mul_(x.alpha[:, None, None, :])
            self._shared_add(kh, qp, s)
            bq = self._rows_through(x.b, a.q_proj.weight)  # BxhxRxd
            kq = (kh @ bq.transpose(2, 3)).reshape(b, h * t, -1)
            out.baddbmm_(kq, x.q)
            s += kh @ a.q_proj.bias.view(h, -1, 1)
        # softmax over the T prompt tokens, in place
        s.sub_(s.amax(dim=2, keepdim=True)).exp_()
        s.div_(s.sum(dim=2, keepdim=True))

    def _normalise(
        self,
        ln: nn.Module,
        buf: Tensor,
        rows: Tensor,
        k: int,
        mean: Tensor,
        sq: Tensor,
        alpha: Tensor | None,
    ) -> LowRankTokens:
        """LayerNorm of Y = diag(alpha) S + buf[:, :k]^T rows (alpha None: 1), given its
        per-token means and sums of squares (BxN); rows BxkxC. Scales ``buf[:, :k]`` in
        place and writes the two rows the LayerNorm adds (shift by beta and by -mean*g)."""
        b, _, c = rows.shape
        r = torch.rsqrt((sq / c).sub_(mean * mean).add_(ln.eps))
        buf[:, :k].mul_(r[:, None, :])
        buf[:, k].fill_(1.0)
        torch.mul(mean, r, out=buf[:, k + 1]).neg_()
        return LowRankTokens(
            alpha=r if alpha is None else alpha * r,
            q=buf[:, : k + 2],
            b=torch.cat([rows * ln.weight, ln.bias.expand(b, 1, c), ln.weight.expand(b, 1, c)], 1),
        )

    # -------------------------------------------------------------------------- forward
    @torch.inference_mode()
    def transformer_lowrank(
        self, ctx: LowRankContext | ImageContext | ReferenceContext, tokens: Tensor
    ) -> tuple[Tensor, LowRankTokens | DenseTokens]:
        """tokens BxTxC -> (queries BxKxC for the IoU and mask tokens, final image tokens)."""
        if not isinstance(ctx, LowRankContext):
            return self._transformer_dense(ctx, tokens)
        base = ctx.base
        l1, l2 = self.tr.layers[0], self.tr.layers[1]
        h = self.heads
        t0 = tokens
        b, t, c = t0.shape
        q = self._layer1_tokens(base, t0)
        # layer 1, image side: Y1 = U + P1 M1, x1 = LN(Y1). All coefficient rows live in one
        # buffer (rows: P1*r1 | 1 | -mean1*r1 | P2 | 1 | 1 | -mean2*r2, layer 2 rescales the
        # first 59 rows by r2 in place) so no step copies them.
        i2t1 = l1.cross_attn_image_to_token
        ht = h * t
        n = base.x0.shape[1]
        r1n, rcn = ht + 2, 2 * ht + 3  # rows of x1, rows of Y2 (x1 + P2 M2 + b_o2)
        buf = torch.empty(b, rcn + 2, n, dtype=t0.dtype, device=t0.device)
        p1 = buf[:, :ht]
        self._i2t_probs(i2t1, q + t0, None, base.q1, None, out=p1)
        vh1 = _heads(i2t1.v_proj(q), h)
        m1 = (vh1 @ self.wo1).reshape(b, ht, c)
        mean1 = torch.bmm(m1.mean(-1)[:, None, :], p1)[:, 0].add_(ctx.u_mean)
        acc = self._shared(vh1 * 2.0, ctx.a1_h).view(b, ht, n)
        acc.baddbmm_(m1 @ m1.transpose(1, 2), p1)
        sq1 = acc.mul_(p1).sum(1).add_(ctx.u_sq)
        x1 = self._normalise(l1.norm4, buf, m1, ht, mean1, sq1, None)
        # layer 2, token side
        qq = q + t0
        q = l2.norm1(q + l2.self_attn(q=qq, k=qq, v=q))
        t2i = self._t2i(l2.cross_attn_token_to_image, q + t0, x1, ctx.ks2_h, ctx.vs2_h, base.kp2)
        q = l2.norm2(q + t2i)
        q = l2.norm3(q + l2.mlp(q))
        # layer 2, image side: Y2 = x1 + P2 M2 + b_o2, x2 = LN(Y2)
        i2t2 = l2.cross_attn_image_to_token
        self._i2t_probs(i2t2, q + t0, x1, ctx.qs2_h, base.qp2, out=buf[:, r1n : r1n + ht])
        buf[:, rcn - 1].fill_(1.0)
        qc = buf[:, :rcn]
        vh2 = _heads(i2t2.v_proj(q), h)
        m2 = (vh2 @ self.wo2).reshape(b, ht, c)
        bc = torch.cat([x1.b, m2, i2t2.out_proj.bias.expand(b, 1, c)], dim=1)
        a1 = x1.alpha
        mean2 = torch.bmm(bc.mean(-1)[:, None, :], qc)[:, 0].addcmul_(a1, ctx.s1_mean)
        # cross terms (rows of Y2's basis) . S1, times 2 * alpha1
        cross2 = torch.empty_like(qc)
        self._shared(vh1, ctx.a2_h, out=cross2[:, :ht].view(b, h, t, n))
        cross2[:, ht : ht + 2] = ctx.s1_fixed.T[:2]
        self._shared(vh2, ctx.a3_h, out=cross2[:, r1n : r1n + ht].view(b, h, t, n))
        cross2[:, rcn - 1] = ctx.s1_fixed[:, 2]
        cross2.mul_((2.0 * a1)[:, None, :])
        acc = cross2.baddbmm_(bc @ bc.transpose(1, 2), qc)
        sq2 = acc.mul_(qc).sum(1).addcmul_(a1 * a1, ctx.s1_sq)
        x2 = self._normalise(l2.norm4, buf, bc, rcn, mean2, sq2, a1)
        # final token->image attention for the output tokens only
        fa = self.tr.final_attn_token_to_image
        k = 1 + self.md.num_mask_tokens
        q, t0 = q[:, :k], t0[:, :k]
        q = self.tr.norm_final_attn(q + self._t2i(fa, q + t0, x2, ctx.ksf_h, ctx.vsf_h, base.kpf))
        return q, x2

    def _transformer_dense(
        self, ctx: ImageContext | ReferenceContext, tokens: Tensor
    ) -> tuple[Tensor, DenseTokens]:
        """``transformer_lowrank`` on a simple path: ``FastMaskDecoder`` or SAM's own."""
        if isinstance(ctx, ImageContext):
            q, x2 = self.transformer(ctx, tokens)
            return q, DenseTokens(x2)
        b = len(tokens)
        src = torch.repeat_interleave(ctx.image_embeddings, b, dim=0) + ctx.dense
        pos = torch.repeat_interleave(ctx.image_pe, b, dim=0)
        hs, x2 = self.tr(src, pos, tokens)
        return hs[:, : 1 + self.md.num_mask_tokens], DenseTokens(x2)

    def _masks_dense(
        self, ctx: ImageContext | ReferenceContext, queries: Tensor, x2: DenseTokens, keep: Tensor
    ) -> Tensor:
        """``masks_lowrank`` on a simple path: all three multimask outputs, then ``keep``."""
        if isinstance(ctx, ImageContext):
            return self.masks(queries, x2.x, [1, 2, 3])[keep]
        b, n, c = x2.x.shape
        side = int(round(math.sqrt(n)))
        up = self.md.output_upscaling(x2.x.transpose(1, 2).reshape(b, c, side, side))
        mlps = self.md.output_hypernetworks_mlps
        hyper = torch.stack([mlps[i](queries[:, 1 + i, :]) for i in (1, 2, 3)], dim=1)
        _, cu, hu, wu = up.shape
        return (hyper @ up.view(b, cu, hu * wu)).view(b, 3, hu, wu)[keep]

    @torch.inference_mode()
    def masks_lowrank(
        self,
        ctx: LowRankContext | ImageContext | ReferenceContext,
        queries: Tensor,
        x2: LowRankTokens | DenseTokens,
        keep: Tensor,
        tile: int = 1024,
    ) -> Tensor:
        """Low-res mask logits Kx256x256 for the multimask outputs ``keep`` selects.

        ``keep`` is Bx3 bool (mask tokens 1..3); the result follows ``keep.nonzero()``
        order. As ``FastMaskDecoder.masks``, but the first transposed convolution is
        taken in low-rank form, alpha * (S2 W1) + Q^T (B W1) + b1, and each prompt reduces
        only against the hypernetwork outputs of its kept tokens.
        """
        if isinstance(x2, DenseTokens):
            return self._masks_dense(ctx, queries, x2, keep)
        b, n = x2.alpha.shape
        w1, b1, w2, b2 = self._upscale_weights()
        bw1 = x2.b @ w1  # BxRx(4*c1)
        mlps = self.md.output_hypernetworks_mlps
        hyper = torch.stack([mlps[i + 1](queries[:, 2 + i, :]) for i in range(3)], dim=2)
        out = []
        for i in range(b):
            cols = keep[i].nonzero()[:, 0]
            if len(cols) == 0:
                continue
            logits = torch.empty(n * 16, len(cols), dtype=bw1.dtype, device=bw1.device)
            for r in range(0, n, tile):
                e = min(r + tile, n)
                y = torch.mm(x2.q[i, :, r:e].T, bw1[i])
                self._upscale_tile(
                    y,
                    b1,
                    w2,
                    b2,
                    hyper[i][:, cols],
                    logits[r * 16 : e * 16],
                    us=ctx.us[r:e],
                    alpha=x2.alpha[i, r:e],
                )
            out.append(self._pixel_grid(logits[None])[0])
        if not out:
            side = 4 * int(round(math.sqrt(n)))
            return torch.empty(0, side, side, dtype=bw1.dtype, device=bw1.device)
        return torch.cat(out)
