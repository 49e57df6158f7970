"""Synthetic proposals with known quality, to test the flywheel's measurement instrument.

``SyntheticProposer`` is a ``Segmenter`` whose ``propose`` builds proposals from an image's
ground truth (looked up by the pixels, ``engine.segment.registry.image_key``) with controlled

- **recall** ``r``: each ground-truth instance gets a correct proposal with probability r;
- **precision** ``p``: besides them, each image gets Poisson(G r (1 - p) / p) wrong proposals
  (G = its instances), so that correct / shown -> p over many images;
- **boundary noise** ``noise_px``: a correct proposal is its instance dilated or eroded by up
  to ``noise_px`` pixels and shifted by up to ``noise_px // 2``, never below IoU 0.86 (so the
  simulated annotator, who accepts at IoU >= 0.85, accepts it as is); a wrong one is a random
  ellipse or box with IoU < 0.4 with every instance (it is rejected);
- **score correlation** ``rho``: predicted IoU = t + (1 - t) Phi(rho z + sqrt(1 - rho^2) e)
  for shown proposals and t Phi(...) for hidden ones, where t is ``shown_thresh``, z the true
  IoU standardised (mean 0.5, sd 0.3) and e standard normal: rho is the correlation of the
  latent normal score with the standardised true IoU (the printed Pearson r of predicted with
  true IoU is a little lower, Phi being non-linear);
- ``hidden``: wrong proposals per image below the confident threshold (stored, never shown
  unless revealed: they must not count in any figure).

``rule()`` is the confident rule that shows exactly the proposals generated as shown (no
NMS, no area limits). ``decode`` / ``embed`` are the wrapped segmenter's, so corrections go
through a real backend. ``scene`` draws flat-coloured synthetic photos with instance masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import ndtr

from engine.flywheel.confident_rule import ConfidentRule
from engine.masks import RLE, mask_bbox
from engine.segment.protocol import DecodeResult, Embedding, Proposal, Segmenter
from engine.segment.registry import image_key

CORRECT_MIN_IOU = 0.86  # above the simulator's 0.85 acceptance
WRONG_MAX_IOU = 0.4  # below its 0.5 fix threshold
IOU_MEAN, IOU_SD = 0.5, 0.3  # standardisation of the true IoU for the score model


@dataclass(frozen=True)
class ProposalSpec:
    """Injected proposal quality (see the module docstring)."""

    precision: float = 0.9
    recall: float = 0.7
    noise_px: int = 2
    rho: float = 0.6
    hidden: int = 2
    shown_thresh: float = 0.5

    def __post_init__(self) -> None:
        for name in ("precision", "recall"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {v}")
        if not -1.0 <= self.rho <= 1.0:
            raise ValueError(f"rho must be in [-1, 1], got {self.rho}")
        if self.noise_px < 0 or self.hidden < 0:
            raise ValueError("noise_px and hidden must be >= 0")
        if not 0.0 < self.shown_thresh < 1.0:
            raise ValueError(f"shown_thresh must be in (0, 1), got {self.shown_thresh}")

    @property
    def key(self) -> str:
        return (f"synthetic:p{self.precision:g}-r{self.recall:g}-n{self.noise_px}"
                f"-rho{self.rho:g}-h{self.hidden}")  # fmt: skip

    def rule(self) -> ConfidentRule:
        """Shows exactly the proposals scored at or above ``shown_thresh``."""
        return ConfidentRule(pred_iou_thresh=self.shown_thresh, stability_thresh=0.0,
                             nms_thresh=1.0, max_area_frac=1.0, min_area=0)  # fmt: skip


@dataclass
class Generated:
    """What ``propose`` made for one image: true IoU, shown flag, correct flag per proposal."""

    true_iou: list[float] = field(default_factory=list)
    shown: list[bool] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    predicted: list[float] = field(default_factory=list)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0


def noisy_copy(gt: np.ndarray, noise_px: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(HW bool, IoU with ``gt`` >= CORRECT_MIN_IOU): ``gt`` dilated or eroded by up to
    ``noise_px`` px and shifted by up to ``noise_px // 2``; less noise while the IoU is too low."""
    for k in range(noise_px, -1, -1):
        grow = int(rng.integers(0, k + 1))
        m = gt
        if grow:
            op = ndimage.binary_dilation if rng.random() < 0.5 else ndimage.binary_erosion
            m = op(gt, iterations=grow)
        s = k // 2
        if s:
            m = np.roll(m, (int(rng.integers(-s, s + 1)), int(rng.integers(-s, s + 1))), (0, 1))
        if m.any() and (iou := _iou(m, gt)) >= CORRECT_MIN_IOU:
            return m, iou
    return gt.copy(), 1.0


def wrong_mask(gts: list[np.ndarray], shape: tuple[int, int], rng: np.random.Generator
               ) -> tuple[np.ndarray, float]:  # fmt: skip
    """(HW bool, best IoU with any of ``gts`` < WRONG_MAX_IOU): a random ellipse or box."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    sizes = [int(g.sum()) for g in gts] or [h * w // 16]
    for attempt in range(60):
        area = max(16.0, float(rng.choice(sizes)) * rng.uniform(0.3, 1.2) / (1 + attempt / 20))
        ry = max(2.0, math.sqrt(area / math.pi) * rng.uniform(0.6, 1.6))
        rx = max(2.0, area / (math.pi * ry))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if rng.random() < 0.5:
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        else:
            m = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        if not m.any():
            continue
        best = max((_iou(m, g) for g in gts), default=0.0)
        if best < WRONG_MAX_IOU:
            return m, best
    m = np.zeros(shape, bool)
    m[:2, :2] = True
    return m, max((_iou(m, g) for g in gts), default=0.0)


class SyntheticProposer:
    """A ``Segmenter``: ``propose`` from ground truth per ``ProposalSpec``; ``embed`` and
    ``decode`` (and ``embed_cached``) are ``inner``'s. ``ground_truth`` maps
    ``image_key(HWC uint8 RGB)`` -> [HW bool instance masks]; ``generated`` records, per image
    key, what was made (for the injected-vs-measured table)."""

    name = "synthetic"

    def __init__(self, inner: Segmenter, ground_truth: dict[str, list[np.ndarray]],
                 spec: ProposalSpec, seed: int = 0) -> None:  # fmt: skip
        self.inner, self.ground_truth, self.spec, self.seed = inner, ground_truth, spec, seed
        self.model_key = f"{spec.key}-s{seed}"
        self.generated: dict[str, Generated] = {}

    def __getattr__(self, item: str) -> Any:
        if item in ("inner", "ground_truth", "spec", "seed", "generated"):
            raise AttributeError(item)
        return getattr(self.inner, item)

    def embed(self, image: np.ndarray) -> Embedding:
        return self.inner.embed(image)

    def decode(self, embedding: Embedding, points: Any = None, labels: Any = None,
               box: Any = None, mask_input: Any = None) -> DecodeResult:  # fmt: skip
        return self.inner.decode(embedding, points, labels, box, mask_input)

    def decode_rle(self, embedding: Embedding, points: Any = None, labels: Any = None,
                   box: Any = None, mask_input: Any = None) -> tuple[RLE, float, Any]:  # fmt: skip
        return self.inner.decode_rle(embedding, points, labels, box, mask_input)

    def _score(self, true_iou: float, shown: bool, rng: np.random.Generator) -> float:
        rho, t = self.spec.rho, self.spec.shown_thresh
        z = (true_iou - IOU_MEAN) / IOU_SD
        u = float(ndtr(rho * z + math.sqrt(max(1.0 - rho * rho, 0.0)) * rng.standard_normal()))
        return t + (1.0 - t) * u if shown else t * u * 0.999

    def propose(self, image: np.ndarray, embedding: Embedding | None = None) -> list[Proposal]:
        """Proposals for an image of ``ground_truth`` (ValueError for any other image)."""
        key = image_key(image)
        gts = self.ground_truth.get(key)
        if gts is None:
            raise ValueError("no ground truth for this image (synthetic proposer)")
        spec, shape = self.spec, image.shape[:2]
        rng = np.random.default_rng([self.seed, int(key[2:18], 16)])
        made: list[tuple[np.ndarray, float, bool, bool]] = []  # mask, true IoU, shown, correct
        for g in gts:
            if rng.random() < spec.recall:
                m, iou = noisy_copy(g, spec.noise_px, rng)
                made.append((m, iou, True, True))
        n_wrong = int(rng.poisson(len(gts) * spec.recall * (1 - spec.precision) / spec.precision))
        for _ in range(n_wrong):
            m, iou = wrong_mask(gts, shape, rng)
            made.append((m, iou, True, False))
        for _ in range(spec.hidden):
            m, iou = wrong_mask(gts, shape, rng)
            made.append((m, iou, False, False))
        order = rng.permutation(len(made))
        out, rec = [], Generated()
        for i in order:
            m, iou, shown, correct = made[int(i)]
            pred = self._score(iou, shown, rng)
            out.append(Proposal(mask=m, predicted_iou=pred, stability=1.0, bbox=mask_bbox(m),
                                area=int(m.sum())))  # fmt: skip
            rec.true_iou.append(iou)
            rec.shown.append(shown)
            rec.correct.append(correct)
            rec.predicted.append(pred)
        self.generated[key] = rec
        return out


PALETTE = [(220, 40, 40), (40, 200, 60), (40, 70, 230), (230, 200, 40), (200, 60, 220),
           (60, 210, 220)]  # fmt: skip


def scene(rng: np.random.Generator, h: int = 72, w: int = 96, objects: tuple[int, int] = (2, 4)
          ) -> tuple[np.ndarray, list[np.ndarray]]:  # fmt: skip
    """A synthetic photo: (HWC uint8 RGB, [HW bool instance masks]) with 2-4 flat-coloured,
    non-overlapping boxes and ellipses on a dark noisy background."""
    img = np.full((h, w, 3), 25, np.uint8) + rng.integers(0, 8, (h, w, 3), dtype=np.uint8)
    taken = np.zeros((h, w), bool)
    masks: list[np.ndarray] = []
    yy, xx = np.mgrid[:h, :w]
    for k in range(int(rng.integers(objects[0], objects[1] + 1))):
        for _ in range(40):
            bh, bw = int(rng.integers(h // 6, h // 2)), int(rng.integers(w // 8, w // 3))
            y0, x0 = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
            if rng.random() < 0.5:
                m = np.zeros((h, w), bool)
                m[y0 : y0 + bh, x0 : x0 + bw] = True
            else:
                cy, cx = y0 + bh / 2, x0 + bw / 2
                m = ((yy - cy) / (bh / 2)) ** 2 + ((xx - cx) / (bw / 2)) ** 2 <= 1.0
            if not (ndimage.binary_dilation(m, iterations=3) & taken).any():
                img[m] = PALETTE[k % len(PALETTE)]
                taken |= m
                masks.append(m)
                break
    return img, masks
