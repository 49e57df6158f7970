"""Backend registry and factory: ``build_segmenter("classical" | "sam", ...) -> Segmenter``.

``BACKENDS`` maps a backend name to a builder; builders import their module lazily so
that choosing ``classical`` never imports torch. With ``cache_dir`` the segmenter is
wrapped in ``CachedSegmenter``: ``embed`` goes through the embedding cache
(``engine.segment.embedding_cache``), and ``embed_cached(sha256, load_image)`` looks an image
up by the sha256 of its file without decoding it when the embedding is cached.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.masks import RLE
from engine.segment.embedding_cache import EmbeddingCache
from engine.segment.protocol import DecodeResult, Embedding, Proposal, Segmenter

PathLike = str | os.PathLike[str]


class BackendError(ValueError):
    """The requested backend cannot be built; the message names the fix."""


def _build_classical(**_: Any) -> Segmenter:
    from engine.segment.classical.segmenter import ClassicalSegmenter

    return ClassicalSegmenter()


# Pre-fill stores every plausible proposal, not only the confident ones: rejected and fixed
# proposals are what calibration learns from (docs/architecture.md), and the annotator can reveal
# the less confident ones on demand. The confident rule (engine.flywheel.confident_rule.ConfidentRule,
# thresholds per backend below) decides which proposals annotators are shown pre-filled.
SAM_PROPOSAL_PARAMS: dict[str, Any] = {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.5}


def _build_sam(
    *, model_type: str, checkpoint: PathLike | None, sha256: str | None, device: str
) -> Segmenter:
    if checkpoint is None or str(checkpoint) == "":
        raise BackendError(
            "the sam backend needs a checkpoint: set DATAENGINE_SAM_CHECKPOINT (or pass "
            "--checkpoint FILE) or use --backend classical"
        )
    if not Path(checkpoint).is_file():
        raise BackendError(
            f"SAM checkpoint not found: {checkpoint} (fix DATAENGINE_SAM_CHECKPOINT / "
            "--checkpoint, download one with `dataengine models download NAME`, "
            "or use --backend classical)"
        )
    from engine.segment.sam.segmenter import SamSegmenter

    try:
        return SamSegmenter(
            model_type=model_type,
            checkpoint=checkpoint,
            sha256=sha256,
            device=device,
            amg_params=dict(SAM_PROPOSAL_PARAMS),
        )
    except (ValueError, OSError) as err:  # bad model type, unreadable file, sha256 mismatch
        raise BackendError(f"cannot load the sam backend: {err}") from err


# The uncalibrated confident rule of each backend, on that backend's own score scale
# (``engine.flywheel.confident_rule.ConfidentRule`` fields; area limits and box NMS 0.7 are shared).
#
# sam: the SAM paper's predicted IoU >= 0.88 and stability >= 0.95.
# classical: its predicted IoU is a heuristic (stability x quantisation x rim x contrast) that
# tops out near 0.7-0.8, so 0.88 keeps nothing. 0.60 / 0.95 was chosen from
# ``scripts/eval_proposals.py`` on the shared ground truth (tiny-coco 100 images,
# coco-panoptic-sample, penn-fudan-sample; correct = IoU >= 0.5 with some object): the most
# precise threshold that still gives at least 3 confident masks on more than 3/4 of the
# sample photos (precision 0.092 [0.070, 0.122]; 0.68 is 0.120 [0.082, 0.171] but leaves
# 4 of the 7 `make run` demo photos with nothing to review).
# Measured figures (precision with its Wilson interval, confident masks per sample photo):
# docs/prefill.md.
DEFAULT_RULES: dict[str, dict[str, float]] = {
    "classical": {"pred_iou_thresh": 0.60, "stability_thresh": 0.95},
    "sam": {"pred_iou_thresh": 0.88, "stability_thresh": 0.95},
}


def default_rule_params(backend: str) -> dict[str, float]:
    """The confident-rule thresholds for ``backend`` (SAM's 0.88 / 0.95 for unknown ones)."""
    return dict(DEFAULT_RULES.get(backend, DEFAULT_RULES["sam"]))


BACKENDS: dict[str, Callable[..., Segmenter]] = {
    "classical": _build_classical,
    "sam": _build_sam,
}


def image_key(image: np.ndarray) -> str:
    """Cache key of a decoded image: sha256 of its shape and HWC uint8 pixels (prefixed ``px``)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(memoryview(arr).cast("B"))
    return "px" + h.hexdigest()


class CachedSegmenter:
    """A ``Segmenter`` whose ``embed`` goes through an ``EmbeddingCache``.

    ``decode``, ``decode_rle`` and ``propose`` are the wrapped segmenter's; other attributes are
    forwarded too (``seg.inner`` is the wrapped one).
    """

    def __init__(self, inner: Segmenter, cache: EmbeddingCache):
        if cache.model_key != inner.model_key:
            raise ValueError(
                f"cache is for model {cache.model_key!r}, segmenter is {inner.model_key!r}"
            )
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.model_key = inner.model_key

    def __getattr__(self, item: str) -> Any:
        # only called for attributes not found on the wrapper itself
        if item in ("inner", "cache"):
            raise AttributeError(item)
        return getattr(self.inner, item)

    def embed(self, image: np.ndarray) -> Embedding:
        """HWC uint8 RGB -> Embedding, cached under the sha256 of the pixels."""
        return self.cache.get_or_compute(image_key(image), lambda: self.inner.embed(image))

    def embed_cached(self, sha256: str, load_image: Callable[[], np.ndarray]) -> Embedding:
        """Embedding of the image whose file has ``sha256``; ``load_image()`` (-> HWC uint8
        RGB) is called only on a cache miss."""
        return self.cache.get_or_compute(sha256, lambda: self.inner.embed(load_image()))

    def is_cached(self, sha256: str) -> bool:
        return self.cache.contains(sha256)

    def decode(
        self,
        embedding: Embedding,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> DecodeResult:
        return self.inner.decode(embedding, points, labels, box, mask_input)

    def decode_rle(
        self,
        embedding: Embedding,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> tuple[RLE, float, np.ndarray | None]:
        return self.inner.decode_rle(embedding, points, labels, box, mask_input)

    def propose(self, image: np.ndarray, embedding: Embedding | None = None) -> list[Proposal]:
        return self.inner.propose(image, embedding)


def with_cache(
    segmenter: Segmenter, cache_dir: PathLike | None, cache_items: int = 32, max_bytes: int = 0
) -> CachedSegmenter:
    """Wrap ``segmenter`` with an embedding cache (memory-only when ``cache_dir`` is None;
    ``cache_dir`` may be an fsspec URL; ``max_bytes`` bounds the stored files, 0 = no bound)."""
    if isinstance(segmenter, CachedSegmenter):
        return segmenter
    cache = EmbeddingCache(
        cache_dir, segmenter.model_key, max_items=cache_items, max_bytes=max_bytes
    )
    return CachedSegmenter(segmenter, cache)


def build_segmenter(
    backend: str,
    *,
    model_type: str = "vit_t",
    checkpoint: PathLike | None = None,
    sha256: str | None = None,
    device: str = "cpu",
    cache_dir: PathLike | None = None,
    cache_items: int = 32,
    cache_max_bytes: int = 0,
) -> Segmenter:
    """Build the ``backend`` segmenter (weights loaded now, once).

    sam: ``model_type`` in vit_t/vit_b/vit_l/vit_h, ``checkpoint`` a .pth path (required),
    ``sha256`` its expected hash (checked when given), ``device`` a torch device.
    classical: needs nothing. With ``cache_dir`` the result is a ``CachedSegmenter``
    (stored cache under ``cache_dir/embeddings``, a folder or an fsspec URL, at most
    ``cache_max_bytes`` per model when > 0, + an LRU of ``cache_items`` embeddings).
    """
    builder = BACKENDS.get(backend)
    if builder is None:
        raise BackendError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    seg = builder(model_type=model_type, checkpoint=checkpoint, sha256=sha256, device=device)
    if cache_dir is not None:
        return with_cache(seg, cache_dir, cache_items, cache_max_bytes)
    return seg


def segmenter_from_settings(
    settings: Any,
    *,
    backend: str | None = None,
    model_type: str | None = None,
    checkpoint: PathLike | None = None,
    sha256: str | None = None,
    device: str | None = None,
) -> Segmenter:
    """The configured segmenter (``engine.settings.Settings``), each argument overriding
    its setting; with the settings' embedding cache. The app and the CLI both build here."""
    return build_segmenter(
        backend or settings.backend,
        model_type=model_type or settings.sam_model,
        checkpoint=checkpoint or settings.sam_checkpoint,
        sha256=sha256 or settings.sam_checkpoint_sha256,
        device=device or settings.device,
        cache_dir=settings.embedding_cache_location,
        cache_items=settings.embedding_cache_items,
        cache_max_bytes=settings.embedding_cache_max_bytes,
    )
