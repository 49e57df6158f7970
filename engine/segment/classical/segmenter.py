"""The weight-free ``classical`` segmentation backend (``docs/architecture.md``).

Embedding: a SLIC superpixel region graph with palette colour histograms and
boundary contrast (``engine.segment.classical.features``), computed once per image.

Decode (per prompt, a few milliseconds): a binary labelling of the superpixels by
s-t graph cut (PyMaxflow, Boykov-Kolmogorov) of an energy with

- hard constraints: superpixels under positive clicks are object, under negative
  clicks background, outside the box (if any) background;
- a geodesic term: geodesic distance on the region graph (edge length = boundary
  contrast + mean-colour difference) from the positive clicks versus from the
  negative clicks and the image border (or the box outside);
- a colour term: log-likelihood ratio of palette-histogram models of object and
  background, re-estimated GrabCut-style from the current labelling
  (``iters`` rounds), the clicked superpixels weighted up;
- a contrast-sensitive Potts smoothness term on shared superpixel boundaries;

then only object components connected to a positive click are kept. A previous
``DecodeResult.logits`` (per-superpixel signed margins) or any HW mask/logit map
passed as ``mask_input`` seeds the colour models (and, with ``w_prev``, a prior).

Propose: regions of a selective-search hierarchy over the superpixels, ranked by
boundary contrast, each refined by one graph cut (see ``ClassicalSegmenter.propose``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import maxflow
import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components, dijkstra

from engine.masks import RLE, mask_bbox
from engine.segment.classical.features import FEATURE_PARAMS, build_features, region_hierarchy
from engine.segment.classical.prompts import box_nodes, click_nodes, mask_prior, scales
from engine.segment.classical.upscale import upscaled_mask, upscaled_rle
from engine.segment.protocol import DecodeResult, Embedding, Proposal, validate_prompt

SOLVER_PARAMS: dict[str, Any] = {
    "w_col": 1.0,  # colour log-likelihood weight (nats per pixel)
    "w_geo": 4.0,  # geodesic-ratio weight
    "w_prev": 0.0,  # prior towards mask_input
    "w_click": 5.0,  # extra weight of clicked superpixels in the colour models
    "border_w": 0.5,  # weight of border superpixels in the background colour model
    "lam": 1.0,  # smoothness per boundary pixel
    "beta": 1.0,  # contrast sensitivity of the smoothness term
    "geo_edge": 1.0,  # boundary-contrast share of the geodesic edge length
    "iters": 2,  # GrabCut-style colour re-estimation rounds
    "eps": 1e-2,  # colour-model smoothing
    "max_proposals": 60,  # propose: hierarchy regions refined (best boundary contrast)
    "prop_min_area": 0.002,  # propose: smallest region, fraction of the image
    "prop_max_area": 0.8,  # propose: largest region, fraction of the image
    "prop_prior": 1.0,  # propose: prior towards the seeding region in its refinement
}
HARD = 1e12


class ClassicalSegmenter:
    """Superpixel graph-cut segmenter implementing ``engine.segment.protocol.Segmenter``."""

    name = "classical"

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(FEATURE_PARAMS) - set(SOLVER_PARAMS)
        if unknown:
            raise ValueError(
                f"unknown classical parameters {sorted(unknown)}; known: "
                f"{sorted(FEATURE_PARAMS) + sorted(SOLVER_PARAMS)}"
            )
        self.feature_params = {k: params.get(k, v) for k, v in FEATURE_PARAMS.items()}
        self.solver_params = {k: params.get(k, v) for k, v in SOLVER_PARAMS.items()}
        blob = json.dumps([self.feature_params, self.solver_params], sort_keys=True)
        self.model_key = f"classical-v2-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    # ------------------------------------------------------------------ embed
    def embed(self, image: np.ndarray) -> Embedding:
        """HWC uint8 RGB -> Embedding whose ``features`` are the region graph (no pixels kept)."""
        feats = build_features(image, self.feature_params)
        return Embedding(self.model_key, (int(image.shape[0]), int(image.shape[1])), feats)

    # ----------------------------------------------------------------- decode
    def decode(
        self,
        embedding: Embedding,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> DecodeResult:
        """Prompt -> one mask; see ``Segmenter.decode`` for frames.

        mask_input: a previous ``logits`` ((n,) float32, one per superpixel) or any 2-D
        (or 1xHxW) map covering the whole image, > 0 meaning object.
        Returns mask HW bool at original resolution, score in [0, 1] (mean label
        certainty) and logits (n,) float32 signed margins (> 0 object).
        """
        lab, score, logits = self._labels(embedding, points, labels, box, mask_input)
        return DecodeResult(
            upscaled_mask(lab[embedding.features["sp"]], embedding.image_size), score, logits
        )

    def decode_rle(
        self,
        embedding: Embedding,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> tuple[RLE, float, np.ndarray]:
        """``decode`` with the mask as COCO RLE (``counts`` str, original resolution), made
        without the full-resolution array (``upscaled_rle``: the same RLE, ~60x cheaper at
        4000 px). Returns (rle, score, logits)."""
        lab, score, logits = self._labels(embedding, points, labels, box, mask_input)
        return upscaled_rle(lab[embedding.features["sp"]], embedding.image_size), score, logits

    def _labels(self, embedding, points, labels, box, mask_input):
        """Prompt -> (object bool (n,) per superpixel, score, logits (n,) float32)."""
        points, labels, box = validate_prompt(embedding.image_size, points, labels, box)
        f = embedding.features
        pos, neg = click_nodes(f, embedding.image_size, points, labels)
        inbox = box_nodes(f, embedding.image_size, box)
        prev = mask_prior(f, mask_input)
        n = len(f["area"])
        if len(pos) == 0 and inbox is None:  # only negative clicks: nothing is object
            return np.zeros(n, bool), 0.0, np.full(n, -1.0, np.float32)
        geo = self._geodesic(f, pos, neg, inbox)
        lab, margin = self._solve(f, pos, neg, inbox, prev, geo, 1.0)
        certainty = np.abs(np.tanh(margin))
        score = float(np.average(certainty, weights=f["area"]))
        logits = np.where(lab, np.abs(margin) + 1e-3, -np.abs(margin) - 1e-3).astype(np.float32)
        return lab, score, logits

    # ---------------------------------------------------------------- propose
    def propose(self, image: np.ndarray, embedding: Embedding | None = None) -> list[Proposal]:
        """HWC uint8 RGB -> proposals from a region hierarchy refined by graph cut.

        1. ``region_hierarchy``: every region formed by greedy selective-search merging
           of the superpixels, with ``prop_min_area``..``prop_max_area`` of the image;
        2. ranked by boundary contrast ratio (length-weighted mean colour step across the
           region's boundary / the same over all superpixel boundaries), near-duplicates
           (IoU > 0.8 on superpixels) dropped, the best ``max_proposals`` kept;
        3. each refined by one graph cut (``_solve``) seeded by the region (colour models
           and a ``prop_prior`` prior), restricted to its box grown by 15 % + 8 px.

        ``stability`` = IoU of the region with its refinement (agreement of two
        segmentations, 1 when the graph cut confirms the region); ``predicted_iou`` =
        stability * quantisation * rim * (1 - exp(-contrast_ratio / 1.5)) of the refined
        mask, where rim = 1 - the share of the image-border superpixels it covers (regions
        along much of the border are background "stuff" far more often than objects) and quantisation = 1 - boundary length * superpixel width / (4 * area) is the IoU
        expected when the true boundary falls anywhere inside the boundary superpixels (a
        quarter-width band misassigned on average; small or thin regions score low). It is
        a monotone score, not a calibrated IoU (``engine.flywheel.calibration`` fits one on human
        decisions).
        ``point_coords`` holds the refined mask's most interior superpixel centre.
        """
        emb = embedding if embedding is not None else self.embed(image)
        f = emb.features
        p = self.solver_params
        area = f["area"].astype(np.float64)
        n, tot = len(area), float(area.sum())
        ei, ej = f["ei"], f["ej"]
        blen, bgrad = f["blen"].astype(np.float64), f["bgrad"].astype(np.float64)
        mean_grad = float(np.average(bgrad, weights=blen)) + 1e-6
        sp_width = float(np.sqrt(tot / n))  # mean superpixel width, working pixels
        border = f["border"].astype(bool)
        n_border = max(int(border.sum()), 1)
        regions = [
            r
            for r in region_hierarchy(f)
            if p["prop_min_area"] * tot <= area[r].sum() <= p["prop_max_area"] * tot
        ]
        if not regions:
            return []
        member = np.zeros((len(regions), n), dtype=bool)
        for i, r in enumerate(regions):
            member[i, r] = True
        ratio = self._contrast(member, ei, ej, blen, bgrad) / mean_grad
        kept: list[int] = []
        for i in np.argsort(-ratio, kind="stable"):
            if all(self._iou(member[i], member[j], area) <= 0.8 for j in kept):
                kept.append(int(i))
            if len(kept) >= int(p["max_proposals"]):
                break
        sx, sy = scales(f, emb.image_size)
        found: list[tuple[np.ndarray, float, float]] = []
        for i in kept:
            region = member[i]
            lab = self._refine(f, region)
            if not lab.any() or lab.all():
                continue
            stability = self._iou(lab, region, area)
            r_ratio = float(self._contrast(lab[None], ei, ej, blen, bgrad)[0]) / mean_grad
            cut = lab[ei] != lab[ej]
            quant = max(0.0, 1.0 - float(blen[cut].sum()) * sp_width / (4.0 * area[lab].sum()))
            rim = 1.0 - float(border[lab].sum()) / n_border  # share of the image rim left free
            score = stability * quant * rim * (1.0 - np.exp(-r_ratio / 1.5))
            pred = float(np.clip(score, 0.0, 1.0))
            dup = next((k for k, o in enumerate(found) if self._iou(lab, o[0], area) > 0.9), None)
            if dup is None:
                found.append((lab, pred, stability))
            elif pred > found[dup][1]:
                found[dup] = (lab, pred, stability)
        out = []
        for lab, pred, stability in found:
            mask = upscaled_mask(lab[f["sp"]], emb.image_size)
            idx = np.flatnonzero(lab)
            inner = idx[np.argmax(self._depth(f, lab)[idx])]
            point = [float(f["cx"][inner] + 0.5) / sx, float(f["cy"][inner] + 0.5) / sy]
            out.append(
                Proposal(
                    mask=mask,
                    predicted_iou=pred,
                    stability=stability,
                    bbox=mask_bbox(mask),
                    area=int(mask.sum()),
                    point_coords=[point],
                    crop_box=[0.0, 0.0, float(emb.image_size[1]), float(emb.image_size[0])],
                )
            )
        return out

    def _refine(self, f: dict, region: np.ndarray) -> np.ndarray:
        """One graph cut seeded by ``region`` (n bool) inside its grown box -> n bool."""
        cx, cy = f["cx"][region], f["cy"][region]
        x0, x1, y0, y1 = cx.min(), cx.max(), cy.min(), cy.max()
        mx, my = 0.15 * (x1 - x0) + 8.0, 0.15 * (y1 - y0) + 8.0
        inbox = (
            (f["cx"] >= x0 - mx)
            & (f["cx"] <= x1 + mx)
            & (f["cy"] >= y0 - my)
            & (f["cy"] <= y1 + my)
        )
        geo = np.where(region, 0.35, 0.65)
        none = np.zeros(0, dtype=int)
        lab, _ = self._solve(
            f, none, none, inbox, region, geo, 1.0, w_prev=float(self.solver_params["prop_prior"])
        )
        return lab

    @staticmethod
    def _contrast(member, ei, ej, blen, bgrad) -> np.ndarray:
        """(R,) length-weighted mean colour step across each region's boundary."""
        cut = member[:, ei] != member[:, ej]
        return (cut * (blen * bgrad)).sum(1) / np.maximum((cut * blen).sum(1), 1e-9)

    @staticmethod
    def _iou(a: np.ndarray, b: np.ndarray, area: np.ndarray) -> float:
        union = float(area[a | b].sum())
        return float(area[a & b].sum()) / union if union else 1.0

    def _depth(self, f: dict, lab: np.ndarray) -> np.ndarray:
        """Per-superpixel hop distance to the nearest non-member (inf outside graph reach)."""
        graph = self._graph(f, np.ones(len(f["ei"])))
        outside = np.flatnonzero(~lab | f["border"])
        if len(outside) == 0:
            return np.zeros(len(lab))
        return dijkstra(graph, indices=outside, min_only=True, unweighted=True)

    # --------------------------------------------------------------- helpers
    @staticmethod
    def _graph(f: dict, weights: np.ndarray) -> sparse.csr_matrix:
        n, ei, ej = len(f["area"]), f["ei"], f["ej"]
        return sparse.coo_matrix(
            (
                np.concatenate([weights, weights]),
                (np.concatenate([ei, ej]), np.concatenate([ej, ei])),
            ),
            shape=(n, n),
        ).tocsr()

    def _geodesic(
        self, f: dict, pos: np.ndarray, neg: np.ndarray, inbox: np.ndarray | None
    ) -> np.ndarray:
        """Per-superpixel d_obj / (d_obj + d_bg) in [0, 1] (0.5 where undefined)."""
        n = len(f["area"])
        if len(pos) == 0:
            return np.full(n, 0.5)
        lengths = f["bgrad"].astype(np.float64) * self.solver_params["geo_edge"] + f["mdiff"] + 1e-3
        graph = self._graph(f, lengths)
        bg_seeds = np.nonzero(f["border"] if inbox is None else ~inbox)[0]
        bg_seeds = np.setdiff1d(np.union1d(bg_seeds, neg), pos)
        d_fg = np.minimum(dijkstra(graph, indices=pos, min_only=True), 1e6)
        if len(bg_seeds) == 0:
            return np.clip(d_fg / (d_fg.max() + 1e-9), 0, 1) * 0.5
        d_bg = np.minimum(dijkstra(graph, indices=bg_seeds, min_only=True), 1e6)
        return d_fg / (d_fg + d_bg + 1e-9)

    def _solve(self, f, pos, neg, inbox, prev, geo, lam_scale: float, w_prev: float | None = None):
        """Graph cut over superpixels -> (object bool (n,), margin (n,) in nats per pixel)."""
        p = self.solver_params
        if w_prev is not None:
            p = {**p, "w_prev": w_prev}
        area = f["area"].astype(np.float64)
        hist = f["hist"].astype(np.float64)
        n, k = hist.shape
        ei, ej = f["ei"], f["ej"]
        bgrad = f["bgrad"].astype(np.float64)
        smooth = (
            lam_scale * p["lam"] * f["blen"] * np.exp(-p["beta"] * bgrad / (bgrad.mean() + 1e-9))
        )
        if prev is not None:
            lab = prev.copy()
        elif inbox is not None and len(pos) == 0:
            lab = inbox.copy()
        else:
            lab = geo < 0.5
        border = f["border"].astype(np.float64)
        margin = np.zeros(n)
        for _ in range(int(p["iters"]) + 1):
            w_fg = area * lab
            w_bg = area * ~lab + p["border_w"] * area * border
            w_fg[pos] += p["w_click"] * area[pos]
            w_bg[neg] += p["w_click"] * area[neg]
            m_fg = w_fg @ hist + p["eps"] * w_fg.sum() / k + 1e-9
            m_bg = w_bg @ hist + p["eps"] * w_bg.sum() / k + 1e-9
            llr = hist @ (np.log(m_bg / m_bg.sum()) - np.log(m_fg / m_fg.sum()))  # > 0: background
            cost_fg = p["w_col"] * np.maximum(llr, 0) + p["w_geo"] * geo
            cost_bg = p["w_col"] * np.maximum(-llr, 0) + p["w_geo"] * (1 - geo)
            if prev is not None and p["w_prev"]:
                cost_fg = cost_fg + p["w_prev"] * ~prev
                cost_bg = cost_bg + p["w_prev"] * prev
            margin = cost_bg - cost_fg
            cost_fg, cost_bg = cost_fg * area, cost_bg * area
            if inbox is not None:
                cost_fg[~inbox] = HARD
            cost_fg[neg], cost_bg[neg] = HARD, 0.0
            cost_fg[pos], cost_bg[pos] = 0.0, HARD
            graph = maxflow.Graph[float](n, len(ei))
            nodes = graph.add_nodes(n)
            graph.add_edges(ei, ej, smooth, smooth)
            graph.add_grid_tedges(nodes, cost_bg, cost_fg)
            graph.maxflow()
            lab = ~graph.get_grid_segments(nodes)
            if len(pos):
                both = lab[ei] & lab[ej]
                adj = sparse.coo_matrix((np.ones(both.sum()), (ei[both], ej[both])), shape=(n, n))
                _, comp = connected_components(adj, directed=False)
                lab &= np.isin(comp, comp[pos])
        return lab, margin
