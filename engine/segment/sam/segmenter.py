"""The ``sam`` backend: segment-anything (vit_b/l/h) and MobileSAM (vit_t) checkpoints.

Implements ``engine.segment.protocol.Segmenter``:

* ``embed``: HWC uint8 RGB -> ``Embedding`` with ``features["image_embeddings"]``
  (1x256x64x64 float32; a float16 copy from a cache is accepted back) and
  ``features["input_size"]`` (h, w of the image resized to 1024 on the long side).
* ``decode``: the same masks and scores as ``SamPredictor.predict`` on the same weights
  (multimask output for a single click without box or mask, best score chosen), computed
  with the refactored decoder; only the chosen mask is upsampled, block by block
  (``engine.segment.sam.upsample``).
* ``mask_to_input``: a stored HxW bool mask -> the 1x256x256 low-res logits ``decode`` takes
  as ``mask_input`` (how a fix of a proposal starts from the proposal, not from scratch).
* ``embed_batch``: B images -> B ``Embedding``s from one encoder call on a Bx3x1024x1024
  batch (what bulk pre-fill on a GPU feeds; equal to ``embed`` per image to float rounding).
* ``propose``: ``FastAutomaticMaskGenerator`` (equivalent to
  ``SamAutomaticMaskGenerator``) on CPU; on CUDA the reference ``SamAutomaticMaskGenerator``
  itself (``generator="auto"``, see ``engine.segment.sam.amg.generator_for_device``), with
  the parameters given at construction.

Coordinates: points (x, y) and boxes XYXY in original-image pixels; masks HxW bool.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide
from torch.nn import functional as tnf

from engine.lru import LRU
from engine.masks import RLE, mask_bbox
from engine.segment.protocol import (
    DecodeResult,
    Embedding,
    PromptError,
    Proposal,
    decode_as_rle,
    validate_prompt,
)
from engine.segment.sam.amg import FastAutomaticMaskGenerator, generator_for_device
from engine.segment.sam.decoder import FastMaskDecoder, ImageContext
from engine.segment.sam.models import MODELS, file_sha256, load_checkpoint, resolve_device
from engine.segment.sam.upsample import full_res_stats

# Magnitude of the logits ``mask_to_input`` gives a stored mask: SAM's own low-res logits
# of a confident mask sit around +-10..20, and its mask prompt was trained on those.
MASK_INPUT_LOGIT = 10.0


class SamSegmenter:
    """A SAM-family model loaded once; thread-compatible for decode (no per-call state)."""

    name = "sam"

    def __init__(
        self,
        model_type: str = "vit_t",
        checkpoint: Path | str | None = None,
        sha256: str | None = None,
        device: str = "cpu",
        *,
        model: torch.nn.Module | None = None,
        amg_params: dict[str, Any] | None = None,
        generator: str = "auto",
    ) -> None:
        """Load ``checkpoint`` (verified against ``sha256`` when given) or wrap ``model``.

        ``device``: a torch device name, or ``"auto"`` (cuda when available, else cpu).

        ``amg_params`` are ``SamAutomaticMaskGenerator`` keyword arguments for ``propose``
        (defaults: the SAM paper's, i.e. predicted IoU > 0.88, stability >= 0.95, NMS 0.7).

        ``generator``: ``"fast"`` (ours), ``"reference"`` (``SamAutomaticMaskGenerator``) or
        ``"auto"`` (fast on CPU, reference on CUDA: ``generator_for_device``).
        """
        if generator not in ("auto", "fast", "reference"):
            raise ValueError(f"generator must be auto, fast or reference, got {generator!r}")
        if model_type not in MODELS:
            raise ValueError(
                f"unknown SAM model type {model_type!r}; choose one of {sorted(MODELS)}"
            )
        device = resolve_device(device)
        if model is None:
            if checkpoint is None:
                raise ValueError(
                    "the sam backend needs a checkpoint: run `dataengine models download "
                    f"{model_type}` and pass its path, or use the classical backend"
                )
            model = load_checkpoint(model_type, Path(checkpoint), sha256=sha256, device=device)
            sha256 = sha256 or file_sha256(Path(checkpoint))
        self.model = model.to(device).eval()
        self.model_type = model_type
        self.device = torch.device(device)
        self.checkpoint_sha256 = sha256 or "unverified"
        self.model_key = f"sam-{model_type}-{self.checkpoint_sha256[:12]}"
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        self.decoder = FastMaskDecoder(self.model)
        self.generator = FastAutomaticMaskGenerator(self.model, **(amg_params or {}))
        self.generator_kind = (
            generator_for_device(self.device) if generator == "auto" else generator
        )
        self._reference: Any = None
        if self.generator_kind == "reference":
            from segment_anything import SamAutomaticMaskGenerator

            self._reference = SamAutomaticMaskGenerator(
                self.model, output_mode="binary_mask", **(amg_params or {})
            )
            self._reference.predictor = _ReusingPredictor(self.model)
        self._reference_lock = threading.Lock()
        self._contexts: LRU[int, tuple[Any, ImageContext]] = LRU(8)

    # ---------------------------------------------------------------------------- embed
    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> Embedding:
        """HWC uint8 RGB -> Embedding (features: image_embeddings 1x256x64x64 float32, input_size)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be HWC uint8 RGB, got shape {image.shape} {image.dtype}")
        emb = self.generator.embed(image)
        h, w = image.shape[:2]
        input_size = self.transform.get_preprocess_shape(h, w, self.transform.target_length)
        return Embedding(
            model_key=self.model_key,
            image_size=(h, w),
            features={"image_embeddings": emb.cpu().numpy(), "input_size": tuple(input_size)},
        )

    @torch.inference_mode()
    def embed_batch(self, images: list[np.ndarray]) -> list[Embedding]:
        """B HWC uint8 RGB images -> B Embeddings (as ``embed``), one Bx3x1024x1024 encoder
        call; one device-to-host copy of the Bx256x64x64 result."""
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"image must be HWC uint8 RGB, got shape {image.shape} {image.dtype}"
                )
        embs = self.generator.embed_batch(images).cpu().numpy()
        out = []
        for image, emb in zip(images, embs, strict=True):
            h, w = image.shape[:2]
            input_size = self.transform.get_preprocess_shape(h, w, self.transform.target_length)
            out.append(
                Embedding(
                    model_key=self.model_key,
                    image_size=(h, w),
                    features={"image_embeddings": emb[None], "input_size": tuple(input_size)},
                )
            )
        return out

    def _embedding_tensor(self, embedding: Embedding) -> torch.Tensor:
        arr = embedding.features.get("image_embeddings")
        if arr is None:
            raise ValueError("embedding has no 'image_embeddings'; was it made by the sam backend?")
        if embedding.model_key != self.model_key:
            raise ValueError(
                f"embedding was made by {embedding.model_key}, this model is {self.model_key}; "
                "re-embed the image"
            )
        return torch.as_tensor(np.asarray(arr), device=self.device).float()

    def _context(self, embedding: Embedding, emb: torch.Tensor) -> ImageContext:
        """Per-image decoder precompute for the no-mask prompt, cached for the last 8 images."""
        arr = embedding.features["image_embeddings"]
        key = id(arr)
        hit = self._contexts.get(key)
        if hit is not None and hit[0] is arr:
            return hit[1]
        pe = self.model.prompt_encoder
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *pe.image_embedding_size)
        ctx = self.decoder.prepare(emb, pe.get_dense_pe(), dense)
        self._contexts.put(key, (arr, ctx))
        return ctx

    # --------------------------------------------------------------------------- decode
    @torch.inference_mode()
    def decode(
        self,
        embedding: Embedding,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> DecodeResult:
        """Prompt -> best mask, as ``SamPredictor.predict`` (see module docstring).

        points Nx2 (x, y) pixels, labels N (1 positive, 0 negative), box XYXY pixels,
        mask_input 1x256x256 float logits from a previous ``DecodeResult.logits``.
        """
        size = embedding.image_size
        points, labels, box = validate_prompt(size, points, labels, box)
        mask_t = self._mask_input(mask_input)
        emb = self._embedding_tensor(embedding)
        pe = self.model.prompt_encoder
        pts = None
        if points is not None:
            coords = torch.as_tensor(self.transform.apply_coords(points, size), dtype=torch.float)
            pts = (
                coords[None].to(self.device),
                torch.as_tensor(labels[None], dtype=torch.int, device=self.device),
            )
        boxes = None
        if box is not None:
            boxes = torch.as_tensor(
                self.transform.apply_boxes(box[None], size), dtype=torch.float, device=self.device
            )
        sparse, dense = pe(points=pts, boxes=boxes, masks=mask_t)
        if mask_t is None:
            ctx = self._context(embedding, emb)
        else:
            ctx = self.decoder.prepare(emb, pe.get_dense_pe(), dense)
        md = self.model.mask_decoder
        out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None], sparse], dim=1)
        q, x2 = self.decoder.transformer(ctx, tokens)
        iou = self.decoder.iou(q)[0]
        multimask = points is not None and len(points) == 1 and box is None and mask_t is None
        candidates = [1, 2, 3] if multimask else [0]
        best = candidates[int(torch.argmax(iou[candidates]))]
        low = self.decoder.masks(q, x2, [best])  # 1x1x256x256
        input_size = embedding.features.get("input_size") or self.transform.get_preprocess_shape(
            size[0], size[1], self.transform.target_length
        )
        return DecodeResult(
            mask=full_res_stats(tuple(input_size), tuple(size)).mask(
                low[0, 0], self.model.mask_threshold
            ),
            score=float(iou[best]),
            logits=low[0].cpu().numpy().astype(np.float32),
        )

    def decode_rle(
        self,
        embedding: Embedding,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> tuple[RLE, float, np.ndarray | None]:
        """``decode`` with the mask as COCO RLE: (rle, score, logits)."""
        return decode_as_rle(self, embedding, points, labels, box, mask_input)

    def _mask_input(self, mask_input: np.ndarray | None) -> torch.Tensor | None:
        if mask_input is None:
            return None
        arr = np.asarray(mask_input, dtype=np.float32)
        if arr.size != 256 * 256:
            raise PromptError(
                f"mask_input must be the 1x256x256 logits of a previous decode, got {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise PromptError("mask_input contains NaN or infinity")
        return torch.as_tensor(arr.reshape(1, 1, 256, 256), device=self.device)

    # ------------------------------------------------------------------ mask_to_input
    @torch.inference_mode()
    def mask_to_input(self, mask: np.ndarray, embedding: Embedding) -> np.ndarray:
        """HxW bool mask (original-image pixels) -> 1x256x256 float32 logits for ``decode``.

        The frame is the one ``SamPredictor`` uses for ``mask_input``: the image resized to
        1024 on the long side (``input_size``), zero-padded at the bottom/right to 1024x1024,
        then reduced 4x to 256x256. Inside the mask the logit is +``MASK_INPUT_LOGIT``,
        outside (and in the padding) -``MASK_INPUT_LOGIT``; edge cells get the fraction in
        between, like SAM's own low-res logits after thresholding.
        """
        h, w = embedding.image_size
        arr = np.asarray(mask)
        if arr.shape != (h, w):
            raise PromptError(
                f"mask must be the image's {h}x{w}, got {arr.shape}; "
                "pass the stored mask of this image"
            )
        input_size = embedding.features.get("input_size") or self.transform.get_preprocess_shape(
            h, w, self.transform.target_length
        )
        ih, iw = (int(v) for v in input_size)
        side = self.transform.target_length
        m = torch.from_numpy(arr.astype(np.float32))[None, None]
        m = tnf.interpolate(m, size=(ih, iw), mode="bilinear", align_corners=False, antialias=True)
        m = tnf.pad(m, (0, side - iw, 0, side - ih))
        frac = tnf.avg_pool2d(m, kernel_size=side // 256)  # 1x1x256x256, in [0, 1]
        logits = (frac * 2.0 - 1.0) * MASK_INPUT_LOGIT
        return logits[0].numpy().astype(np.float32)

    # -------------------------------------------------------------------------- propose
    def propose(self, image: np.ndarray, embedding: Embedding | None = None) -> list[Proposal]:
        """HWC uint8 RGB -> proposals of ``FastAutomaticMaskGenerator`` (whole-image embedding reused)."""
        emb = None
        if embedding is not None and embedding.image_size == tuple(image.shape[:2]):
            emb = self._embedding_tensor(embedding)
        records = self._generate(image, emb)
        out = []
        for r in records:
            mask = r["segmentation"]
            out.append(
                Proposal(
                    mask=mask,
                    predicted_iou=float(r["predicted_iou"]),
                    stability=float(r["stability_score"]),
                    bbox=mask_bbox(mask),
                    area=int(r["area"]),
                    point_coords=[[float(v) for v in p] for p in r["point_coords"]],
                    crop_box=[float(v) for v in r["crop_box"]],
                )
            )
        return out

    def _generate(self, image: np.ndarray, emb: torch.Tensor | None) -> list[dict[str, Any]]:
        """Mask records from the chosen generator (``generator_kind``)."""
        if self._reference is None:
            return self.generator.generate(image, embedding=emb)
        with self._reference_lock, torch.inference_mode():
            predictor = self._reference.predictor
            predictor.preset = None if emb is None else (tuple(image.shape[:2]), emb)
            try:
                return self._reference.generate(image)
            finally:
                predictor.preset = None


class _ReusingPredictor(SamPredictor):
    """``SamPredictor`` whose ``set_image`` takes a given whole-image embedding (``preset``:
    ((H, W), 1x256x64x64 tensor on the model's device)) for an image of that size instead
    of running the encoder again; crops of other sizes are encoded as usual."""

    preset: tuple[tuple[int, int], torch.Tensor] | None = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        if self.preset is None or tuple(image.shape[:2]) != self.preset[0]:
            super().set_image(image, image_format)
            return
        self.reset_image()
        h, w = image.shape[:2]
        self.original_size = (h, w)
        self.input_size = tuple(
            self.transform.get_preprocess_shape(h, w, self.transform.target_length)
        )
        self.features = self.preset[1].to(self.device).float()
        self.is_image_set = True
