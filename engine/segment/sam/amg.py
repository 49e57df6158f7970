"""Our automatic mask generator: ``SamAutomaticMaskGenerator``'s masks, much less work.

Same parameters, same weights, same output records as
``segment_anything.SamAutomaticMaskGenerator.generate`` (``output_mode="binary_mask"``),
reorganised so that work is spent only on masks that can survive:

0. the image encoder runs with its BatchNorms folded into the convolutions, channels-last
   (``engine.segment.sam.encoder``; same embedding to float32 rounding);
1. all grid points of a crop go through the prompt encoder at once and through
   ``LowRankMaskDecoder`` in chunks (on CPU, chunks run in parallel worker threads): the
   per-prompt image tokens are never materialised, only their low-rank change from the
   shared image embedding;
2. the predicted-IoU filter runs on the decoder's IoU head *before* any mask is produced,
   and the 256x256 mask upscaling runs only for prompts with a surviving mask, reduced
   only against the surviving tokens;
3. stability scores and boxes are computed as the reference computes them on
   full-resolution logits, but without materialising those (``FullResStats``);
4. box NMS runs on those boxes before any full-resolution mask exists; only the
   survivors are thresholded at full resolution (block-wise, ``FullResStats.mask``).

Devices: the model (encoder, prompt encoder, low-rank decoder) runs on the model's device;
each chunk's survivors (IoU scores, 256x256 logits, prompt indices) are copied to the host
once, and stability, boxes, NMS and the full-resolution masks run there. Every NMS gets
its boxes, scores and category ids on one device (the boxes'); nothing calls ``.numpy()``
on a tensor that may live on a GPU. On CUDA this host-side finishing has no benefit over
the reference generator, so ``SamSegmenter`` uses ``SamAutomaticMaskGenerator`` there
(``generator_for_device``); this class stays correct on any device.

Coordinates: ``point_coords`` are (x, y) pixels, ``bbox`` and ``crop_box`` are XYWH pixels
of the original image; ``segmentation`` is an HxW bool mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from segment_anything.utils.amg import (
    batched_mask_to_box,
    build_all_layer_point_grids,
    generate_crop_boxes,
    is_box_near_crop_edge,
    remove_small_regions,
)
from segment_anything.utils.transforms import ResizeLongestSide
from torchvision.ops.boxes import batched_nms, box_area

from engine.segment.sam.decoder_lowrank import LowRankMaskDecoder
from engine.segment.sam.encoder import embed_input, inference_encoder
from engine.segment.sam.threads import single_threaded_workers
from engine.segment.sam.upsample import FullResStats, full_res_stats


@dataclass
class AmgParams:
    """The reference generator's parameters, with its defaults (SAM paper settings)."""

    points_per_side: int = 32
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0


def _host(t: torch.Tensor) -> torch.Tensor:
    """``t`` on the CPU (itself when it is there already)."""
    return t if t.device.type == "cpu" else t.cpu()


def _nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> torch.Tensor:
    """``batched_nms`` of N boxes (XYXY, any dtype) with one category, every argument on the
    boxes' device (torchvision requires it). Returns kept indices, highest score first."""
    dev = boxes.device
    return batched_nms(
        boxes.float(),
        scores.to(dev, torch.float32),
        torch.zeros(len(boxes), dtype=torch.int64, device=dev),
        thresh,
    )


def generator_for_device(device: torch.device | str) -> str:
    """Which automatic generator pays off on ``device``: ``"fast"`` (this module) on CPU,
    ``"reference"`` (``segment_anything.SamAutomaticMaskGenerator``) on CUDA and others.

    Our generator's gains are CPU-specific (cache-sized chunks on worker threads, fused C
    kernels, host-side stats); on a GPU the reference's batched full-resolution path is as
    fast or faster (``scripts/bench_gpu.py`` measures both) and is what Meta ran.
    """
    return "fast" if torch.device(device).type == "cpu" else "reference"


class FastAutomaticMaskGenerator:
    """Drop-in for ``SamAutomaticMaskGenerator(model, **params).generate`` on CPU or GPU.

    ``chunk`` is how many prompts go through the decoder at once. The per-prompt work is
    on 4096 x ~120 coefficient arrays (2 MB each) and is memory-bound, so small chunks that
    stay in the CPU's cache are fastest there, but the prompt-token side streams the token
    MLPs' weights once per chunk (8 measured best, 9% ahead of 4 and 3% of 16, 2 cores);
    on a GPU use larger ones.

    ``workers`` chunks run at once on CPU (default: torch's thread count), each in its own
    thread with single-threaded torch ops: ops this small barely use a second core when
    torch splits them (measured: 2 torch threads no faster than 1), whole chunks in
    parallel do. The caller's own torch thread count is left alone (see
    ``single_threaded_workers``). Results and their order do not depend on ``workers``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        chunk: int = 8,
        workers: int | None = None,
        **params: Any,
    ) -> None:
        self.model = model
        self.p = AmgParams(**params)
        if self.p.points_per_side < 1:
            raise ValueError("points_per_side must be >= 1")
        self.grids = build_all_layer_point_grids(
            self.p.points_per_side, self.p.crop_n_layers, self.p.crop_n_points_downscale_factor
        )
        self.chunk = chunk
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.decoder = LowRankMaskDecoder(model)
        self.encoder = inference_encoder(model.image_encoder)
        self.transform = ResizeLongestSide(model.image_encoder.img_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------- public
    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> torch.Tensor:
        """HWC uint8 RGB -> image embedding 1x256x64x64 float32 (the reference's set_image)."""
        x = self.transform.apply_image(image)
        x = torch.as_tensor(x, device=self.device).permute(2, 0, 1).contiguous()[None]
        return self.encoder(embed_input(self.model.preprocess(x)))

    @torch.inference_mode()
    def embed_batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """B HWC uint8 RGB images (any sizes) -> Bx256x64x64 float32 embeddings, one encoder
        call on a Bx3x1024x1024 batch (each image resized to 1024 on its long side, normalised
        and zero-padded as ``embed`` does), on the model's device."""
        if not len(images):
            raise ValueError("embed_batch needs at least one image")
        batch = []
        for image in images:
            x = self.transform.apply_image(image)
            x = torch.as_tensor(x, device=self.device).permute(2, 0, 1).contiguous()[None]
            batch.append(self.model.preprocess(x))
        return self.encoder(embed_input(torch.cat(batch)))

    @torch.inference_mode()
    def generate(
        self, image: np.ndarray, embedding: torch.Tensor | None = None
    ) -> list[dict[str, Any]]:
        """HWC uint8 RGB -> list of mask records (keys as the reference's ``generate``).

        ``embedding`` (1x256x64x64) may be given for the whole-image crop to skip the encoder.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be HWC uint8 RGB, got {image.shape} {image.dtype}")
        orig = image.shape[:2]
        crop_boxes, layers = generate_crop_boxes(
            orig, self.p.crop_n_layers, self.p.crop_overlap_ratio
        )
        parts = []
        for box, layer in zip(crop_boxes, layers, strict=True):
            emb = embedding if (embedding is not None and layer == 0) else None
            parts.append(self._crop(image, box, layer, orig, emb))
        data = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        if len(crop_boxes) > 1 and len(data["boxes"]):
            keep = _nms(
                data["boxes"], 1 / box_area(data["crop_boxes"].float()), self.p.crop_nms_thresh
            )
            data = {k: v[keep] for k, v in data.items()}
        masks = self._final_masks(data, orig)
        if self.p.min_mask_region_area > 0 and len(masks):
            data, masks = self._small_regions(data, masks)
        return self._records(data, masks)

    def _pool_size(self, n_items: int) -> int:
        """How many worker threads ``_map`` uses for ``n_items`` (1: the caller's thread)."""
        n = self.workers
        if n is None:
            n = torch.get_num_threads() if self.device.type == "cpu" else 1
        return max(1, min(n, n_items))

    def _map(self, fn: Callable[[int], Any], items: Sequence[int]) -> list[Any]:
        """``[fn(i) for i in items]``, on CPU spread over ``workers`` threads (same order)."""
        n = self._pool_size(len(items))
        if n <= 1:
            return [fn(i) for i in items]
        with single_threaded_workers(n) as pool:
            return list(pool.map(fn, items))

    # ------------------------------------------------------------------------ per crop
    def _crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        layer: int,
        orig: tuple[int, int],
        embedding: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1, :]
        size = crop.shape[:2]
        feats = self.embed(crop) if embedding is None else embedding.to(self.device).float()
        input_size = self.transform.get_preprocess_shape(
            size[0], size[1], self.transform.target_length
        )
        points = self.grids[layer] * np.array(size)[None, ::-1]
        stats = full_res_stats(tuple(input_size), tuple(size))
        pe = self.model.prompt_encoder
        coords = torch.as_tensor(
            self.transform.apply_coords(points, size), dtype=torch.float, device=self.device
        )
        labels = torch.ones(len(coords), 1, dtype=torch.int, device=self.device)
        with torch.inference_mode():
            sparse, dense = pe(points=(coords[:, None, :], labels), boxes=None, masks=None)
            ctx = self.decoder.prepare_lowrank(feats, pe.get_dense_pe(), dense[:1])
            md = self.model.mask_decoder
            out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        starts = range(0, len(coords), self.chunk)
        pooled = self._pool_size(len(starts)) > 1

        def run(i: int) -> dict[str, torch.Tensor] | None:
            j = min(i + self.chunk, len(coords))
            with torch.inference_mode():  # thread-local: workers enter it themselves
                tokens = torch.cat([out_tokens[None].expand(j - i, -1, -1), sparse[i:j]], 1)
            return self._chunk(ctx, tokens, points[i:j], stats, crop_box, orig, pooled)

        kept: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("iou", "stab", "boxes", "points", "logits")
        }
        for part in self._map(run, starts):
            if part is not None:
                for k, v in part.items():
                    kept[k].append(v)
        if not kept["iou"]:
            kept = {
                "iou": [torch.zeros(0)],
                "stab": [torch.zeros(0)],
                "boxes": [torch.zeros(0, 4, dtype=torch.int64)],
                "points": [torch.zeros(0, 2, dtype=torch.float64)],
                "logits": [torch.zeros(0, 256, 256)],
            }
        data = {k: torch.cat(v) for k, v in kept.items()}
        if len(data["boxes"]):
            keep = _nms(data["boxes"], data["iou"], self.p.box_nms_thresh)
            data = {k: v[keep] for k, v in data.items()}
        n, dev = len(data["boxes"]), data["boxes"].device  # the host (see ``_chunk``)
        data["boxes"] = data["boxes"] + torch.tensor([[x0, y0, x0, y0]], device=dev)
        data["points"] = data["points"] + torch.tensor(
            [[x0, y0]], dtype=data["points"].dtype, device=dev
        )
        data["crop_boxes"] = torch.tensor([crop_box] * n, dtype=torch.int64, device=dev).reshape(
            n, 4
        )
        data["input_size"] = torch.tensor(
            [list(input_size)] * n, dtype=torch.int64, device=dev
        ).reshape(n, 2)
        return data

    @torch.inference_mode()
    def _chunk(
        self,
        ctx: Any,
        tokens: torch.Tensor,
        points: np.ndarray,
        stats: FullResStats,
        crop_box: list[int],
        orig: tuple[int, int],
        pooled: bool,
    ) -> dict[str, torch.Tensor] | None:
        """One chunk of prompts -> the surviving candidates' records (None: none survive).

        ``pooled``: running on one of ``_map``'s worker threads (stats then single-threaded).
        """
        q, x2 = self.decoder.transformer_lowrank(ctx, tokens)
        iou = self.decoder.iou(q)[:, 1:]  # multimask outputs, as the reference
        keep = (
            iou > self.p.pred_iou_thresh
            if self.p.pred_iou_thresh > 0
            else torch.ones_like(iou, dtype=torch.bool)
        )
        rows = keep.any(dim=1).nonzero()[:, 0]
        if len(rows) == 0:
            return None
        if len(rows) < len(q):
            q, x2 = q[rows], x2.select(rows)
        sel = keep[rows]
        logits = self.decoder.masks_lowrank(ctx, q, x2, sel)  # K x 256 x 256, sel order
        pr, mk = sel.nonzero().unbind(1)
        # the model runs on its device; the rest of the pipeline (stats, NMS, records) is on
        # the host: one copy of the survivors here, never .numpy() on a device tensor
        ious = _host(iou[rows][pr, mk])
        logits = _host(logits)
        rows_h, pr_h = _host(rows).numpy(), _host(pr).numpy()
        pts = torch.as_tensor(points[rows_h][pr_h], dtype=torch.float64)
        stab, boxes = stats(
            logits, self.p.stability_score_offset, self.model.mask_threshold, parallel=not pooled
        )
        good = (
            stab >= self.p.stability_score_thresh
            if self.p.stability_score_thresh > 0
            else torch.ones_like(stab, dtype=torch.bool)
        )
        h, w = orig
        near = is_box_near_crop_edge(boxes, crop_box, [0, 0, w, h])
        good &= ~near
        parts = {"iou": ious, "stab": stab, "boxes": boxes, "points": pts, "logits": logits}
        return {k: v[good] for k, v in parts.items()}

    # ----------------------------------------------------------------------- finishing
    def _final_masks(self, data: dict[str, torch.Tensor], orig: tuple[int, int]) -> torch.Tensor:
        """Threshold the survivors' logits at full resolution as ``Sam.postprocess_masks``."""
        h, w = orig
        out = torch.zeros((len(data["boxes"]), h, w), dtype=torch.bool)
        for i in range(len(out)):
            x0, y0, x1, y1 = data["crop_boxes"][i].tolist()
            ih, iw = data["input_size"][i].tolist()
            up = full_res_stats((ih, iw), (y1 - y0, x1 - x0))  # built by ``_crop`` already
            m = up.mask(data["logits"][i], self.model.mask_threshold)
            out[i, y0:y1, x0:x1] = torch.from_numpy(m)
        if len(out):
            data["boxes"] = batched_mask_to_box(out)
        return out

    def _small_regions(
        self, data: dict[str, torch.Tensor], masks: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The reference's ``postprocess_small_regions``: fill holes, drop islands, re-NMS."""
        area = self.p.min_mask_region_area
        new, scores = [], []
        for m in masks.numpy():
            m2, changed_h = remove_small_regions(m, area, mode="holes")
            m2, changed_i = remove_small_regions(m2, area, mode="islands")
            new.append(torch.as_tensor(m2))
            scores.append(float(not (changed_h or changed_i)))
        stacked = torch.stack(new)
        boxes = batched_mask_to_box(stacked)
        keep = _nms(
            boxes, torch.as_tensor(scores), max(self.p.box_nms_thresh, self.p.crop_nms_thresh)
        )
        changed = torch.as_tensor(scores) == 0
        masks = torch.where(changed[:, None, None], stacked, masks)
        data["boxes"] = torch.where(changed[:, None], boxes, data["boxes"])
        return {k: v[keep] for k, v in data.items()}, masks[keep]

    @staticmethod
    def _records(data: dict[str, torch.Tensor], masks: torch.Tensor) -> list[dict[str, Any]]:
        out = []
        areas = masks.flatten(1).sum(1).tolist() if len(masks) else []
        for i in range(len(masks)):
            x0, y0, x1, y1 = data["boxes"][i].tolist()
            cx0, cy0, cx1, cy1 = data["crop_boxes"][i].tolist()
            out.append(
                {
                    "segmentation": masks[i].numpy(),
                    "area": int(areas[i]),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "predicted_iou": float(data["iou"][i]),
                    "point_coords": [data["points"][i].tolist()],
                    "stability_score": float(data["stab"][i]),
                    "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0],
                }
            )
        return out
