"""Pre-fill: run a segmenter's automatic proposals over a project and store them as masks.

Every proposal is stored (``mask`` rows: source ``model``, status ``proposed``, COCO RLE,
XYWH bbox, area, predicted IoU, stability, point_coords, crop_box); the ``confident``
flag marks the ones the annotator sees pre-filled. The others stay hidden ("less confident")
until the annotator reveals them (``GET /api/images/{id}/masks?include=less_confident``,
logged as a ``reveal_less_confident`` event); summaries count only what was shown.

``ConfidentRule.for_backend`` gives each backend's rule on its own score scale
(``engine.segment.registry.DEFAULT_RULES``): SAM's predicted IoU >= 0.88 and stability >=
0.95; the classical backend's predicted IoU >= 0.60 and stability >= 0.95 (its scores top
out near 0.7-0.8). Measured with ``scripts/eval_proposals.py --pick`` on the shared ground
truth (103 images: tiny-coco, coco-panoptic-sample, penn-fudan-sample): precision 0.12
[0.08, 0.17] at IoU >= 0.5 (2.0 confident masks an image), the highest of the thresholds that
still give >= 3 confident masks on most sample photos (6 of 9: astronaut 4, cars 3, dog 4,
dog1 0, dog2 0, dogs 3, groceries 0, person1 8, truck 9); docs/prefill.md has the table.
Box NMS 0.7 and area limits for both. Once the model
version has a ``calibration``, ``engine.flywheel.calibration.score_proposals`` decides instead
and its probability is stored as ``calibrated_confidence``.

Idempotent and resumable: each image's masks and its ``prefill`` row are written in one
transaction, and images that already have a ``prefill`` row for the model version are
skipped. A killed run loses at most the image in flight; two concurrent workers are kept
apart by the unique (image, model version) constraint (the loser rolls back and skips).
A bad image gets ``prefill.status = "failed"`` with the reason and never stops the batch.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, exists, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.errors import InvalidInput, NotFound
from db.models import Image, Mask, ModelVersion, Prefill, Project
from db.rounds import current_round, ensure_first_round
from db.session import transaction
from engine.imageio import DEFAULT_MAX_PIXELS, load_rgb
from engine.masks import encode_rle_batch
from engine.segment.protocol import Embedding, Proposal, Segmenter
from engine.telemetry import PREFILL_IMAGES

log = logging.getLogger("dataengine.prefill")

RLE_CHUNK = 32  # masks encoded per pycocotools call (bounds the NHW bool stack in memory)


# --- the confident rule ------------------------------------------------------------------


def box_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Greedy box NMS. boxes: Nx4 float XYXY pixels; scores: N. Returns kept indices
    (int64), highest score first (ties keep the earlier proposal); a box is dropped when
    its IoU with a kept one is > ``iou_thresh``.

    ``torchvision.ops.nms`` does it when torchvision is already loaded (the sam backend).
    The classical backend never loads torch, and importing torch + torchvision just for
    this costs seconds per process (measured 5-35 s here), so without it the same rule
    runs in numpy (``_box_nms_numpy``; tests check both agree on random boxes with ties).
    """
    if "torchvision" in sys.modules:
        import torch
        from torchvision.ops import nms

        if len(boxes_xyxy) == 0:
            return np.zeros(0, dtype=np.int64)
        keep = nms(
            torch.as_tensor(np.asarray(boxes_xyxy, dtype=np.float64)),
            torch.as_tensor(np.asarray(scores, dtype=np.float64)),
            float(iou_thresh),
        )
        return keep.numpy().astype(np.int64, copy=False)
    return _box_nms_numpy(boxes_xyxy, scores, iou_thresh)


def _box_nms_numpy(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """``box_nms`` without torch (same arguments, same result)."""
    n = len(boxes_xyxy)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(int(i))
        rest = order[pos + 1 :]
        rest = rest[~suppressed[rest]]
        if len(rest) == 0:
            break
        iw = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        ih = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = iw * ih
        union = area[i] + area[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        suppressed[rest[iou > iou_thresh]] = True
    return np.asarray(keep, dtype=np.int64)


@dataclass
class ConfidentRule:
    """Which proposals are pre-filled as confident (SAM paper defaults).

    A proposal is confident when it passes the score test (predicted IoU and stability
    thresholds, or the calibration's verdict), its area is within
    [``min_area`` px, ``max_area_frac`` of the image), and it survives greedy box NMS at
    ``nms_thresh`` among the proposals that passed (higher score first).
    """

    pred_iou_thresh: float = 0.88
    stability_thresh: float = 0.95
    nms_thresh: float = 0.7
    max_area_frac: float = 0.95
    min_area: int = 100

    def __post_init__(self) -> None:
        for name in ("pred_iou_thresh", "stability_thresh", "nms_thresh", "max_area_frac"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InvalidInput(f"{name} must be between 0 and 1, got {v}")
        if self.min_area < 0:
            raise InvalidInput(f"min_area must be >= 0 pixels, got {self.min_area}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_backend(cls, backend: str, **overrides: Any) -> ConfidentRule:
        """The backend's default rule (``engine.segment.registry.DEFAULT_RULES``: thresholds on
        that backend's own score scale), with ``overrides`` (fields of this class; None values
        are ignored) applied on top."""
        from engine.segment.registry import default_rule_params

        unknown = set(overrides) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidInput(f"unknown confident-rule field(s): {', '.join(sorted(unknown))}")
        params: dict[str, Any] = default_rule_params(backend)
        params.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**params)

    def apply(
        self,
        proposals: Sequence[Proposal],
        image_size: tuple[int, int],
        *,
        scores: np.ndarray | None = None,
        passed: np.ndarray | None = None,
    ) -> np.ndarray:
        """N bool: confident or not. ``image_size`` is (H, W).

        ``scores``/``passed`` (N float / N bool) replace the threshold test when a
        calibration decides; NMS then orders by ``scores``.
        """
        n = len(proposals)
        if n == 0:
            return np.zeros(0, dtype=bool)
        h, w = image_size
        iou = np.array([p.predicted_iou for p in proposals], dtype=np.float64)
        stab = np.array([p.stability for p in proposals], dtype=np.float64)
        area = np.array([p.area for p in proposals], dtype=np.float64)
        if passed is None:
            ok = (iou >= self.pred_iou_thresh) & (stab >= self.stability_thresh)
            scores = iou
        else:
            ok = np.asarray(passed, dtype=bool).copy()
            scores = iou if scores is None else np.asarray(scores, dtype=np.float64)
        ok &= (area >= self.min_area) & (area < self.max_area_frac * h * w)
        candidates = np.flatnonzero(ok)
        confident = np.zeros(n, dtype=bool)
        if len(candidates):
            xywh = np.array([proposals[i].bbox for i in candidates], dtype=np.float64)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            kept = box_nms(xyxy, scores[candidates], self.nms_thresh)
            confident[candidates[kept]] = True
        return confident


def score(
    proposals: Sequence[Proposal],
    image_size: tuple[int, int],
    rule: ConfidentRule,
    calibration: dict[str, Any] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(confident N bool, calibrated confidence N float or None)."""
    if not calibration or not proposals:
        return rule.apply(proposals, image_size), None
    from engine.flywheel.calibration import score_proposals

    confidence, passed = score_proposals(calibration, list(proposals), image_size)
    confidence = np.asarray(confidence, dtype=np.float64)
    return rule.apply(proposals, image_size, scores=confidence, passed=passed), confidence


# --- model versions ----------------------------------------------------------------------


def ensure_model_version(
    session: Session,
    *,
    segmenter: Segmenter,
    checkpoint_path: str | Path | None = None,
    checkpoint_sha256: str | None = None,
) -> ModelVersion:
    """The model version for this segmenter (backend + ``model_key``), created if missing.

    When several match (e.g. calibrated children with the same weights) the oldest is
    returned; pick a calibrated one explicitly (``model_version_id``) or via the round.
    """
    key = segmenter.model_key
    rows = session.scalars(
        select(ModelVersion).where(ModelVersion.backend == segmenter.name).order_by(ModelVersion.id)
    ).all()
    for mv in rows:
        if (mv.params or {}).get("model_key") == key:
            return mv
    model_type = getattr(segmenter, "model_type", None)
    mv = ModelVersion(
        name=f"{segmenter.name}:{model_type or key}"[:200],
        backend=segmenter.name,
        model_type=model_type,
        checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
        checkpoint_sha256=checkpoint_sha256 or getattr(segmenter, "checkpoint_sha256", None),
        params={"model_key": key},
    )
    session.add(mv)
    session.flush()
    return mv


def _check_model_version(mv: ModelVersion, segmenter: Segmenter) -> None:
    key = (mv.params or {}).get("model_key")
    if mv.backend != segmenter.name or (key is not None and key != segmenter.model_key):
        raise InvalidInput(
            f"model version {mv.id} is {mv.backend} ({key or mv.model_type}) but the loaded "
            f"segmenter is {segmenter.name} ({segmenter.model_key}); load the matching "
            "backend/checkpoint or choose another --model-version"
        )


def _check_calibration(calibration: dict[str, Any], mv_id: int) -> None:
    """Fail fast (InvalidInput) on a calibration the scorer cannot read, before any image."""
    probe = Proposal(
        mask=np.ones((4, 4), bool), predicted_iou=0.9, stability=0.9, bbox=[0, 0, 4, 4], area=16
    )
    try:
        score([probe], (8, 8), ConfidentRule(), calibration)
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidInput(
            f"model version {mv_id} has an unreadable calibration ({err}); recalibrate it "
            "or pre-fill with its parent model version"
        ) from err


# --- the job -----------------------------------------------------------------------------


@dataclass
class PrefillSummary:
    """Counts of one pre-fill run. ``seconds`` sums per-image compute (load+embed+propose)."""

    model_version_id: int
    total: int = 0  # ok images considered (after image_ids)
    done: int = 0
    skipped: int = 0  # already pre-filled for this model version (before or concurrently)
    failed: int = 0
    proposals: int = 0
    confident: int = 0
    seconds: float = 0.0
    failures: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)

    @property
    def seconds_per_image(self) -> float | None:
        n = self.done + self.failed
        return self.seconds / n if n else None


def _embed(segmenter: Any, sha256: str | None, image: np.ndarray) -> Embedding:
    if sha256 and hasattr(segmenter, "embed_cached"):
        return segmenter.embed_cached(sha256, lambda: image)
    return segmenter.embed(image)


def _mask_rows(
    proposals: Sequence[Proposal],
    confident: np.ndarray,
    calibrated: np.ndarray | None,
    *,
    image_id: int,
    image_size: tuple[int, int],
    model_version_id: int,
    round_id: int | None,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for start in range(0, len(proposals), RLE_CHUNK):
        chunk = proposals[start : start + RLE_CHUNK]
        for p in chunk:
            if p.mask.shape != image_size:
                raise ValueError(f"backend returned a {p.mask.shape} mask for a {image_size} image")
        rles = encode_rle_batch(np.stack([np.asarray(p.mask, dtype=bool) for p in chunk]))
        for j, (p, rle) in enumerate(zip(chunk, rles, strict=True)):
            i = start + j
            rows.append(
                {
                    "image_id": image_id,
                    "rle": rle,
                    "bbox": [float(v) for v in p.bbox],
                    "area": int(p.area),
                    "source": "model",
                    "status": "proposed",
                    "model_version_id": model_version_id,
                    "round_id": round_id,
                    "predicted_iou": float(p.predicted_iou),
                    "stability": float(p.stability),
                    "calibrated_confidence": None if calibrated is None else float(calibrated[i]),
                    "confident": bool(confident[i]),
                    "point_coords": [[float(x), float(y)] for x, y in p.point_coords] or None,
                    "crop_box": [float(v) for v in p.crop_box] or None,
                    "meta": {},
                }
            )
    return rows


def pending_images(
    session: Session,
    *,
    project_id: int,
    model_version_id: int,
    image_ids: Sequence[int] | None = None,
) -> tuple[int, list[tuple[int, str, str | None]]]:
    """(number of ok images considered, [(id, uri, sha256)] without a prefill row), by id."""
    base = select(Image.id, Image.uri, Image.sha256).where(
        Image.project_id == project_id, Image.status == "ok"
    )
    if image_ids is not None:
        base = base.where(Image.id.in_(list(image_ids)))
    total = len(session.execute(base).all())
    done = exists().where(
        Prefill.image_id == Image.id, Prefill.model_version_id == model_version_id
    )
    rows = session.execute(base.where(~done).order_by(Image.id)).all()
    return total, [(r[0], r[1], r[2]) for r in rows]


def prefill_project(
    factory: sessionmaker[Session],
    *,
    project_id: int,
    segmenter: Segmenter,
    model_version_id: int | None,
    rule: ConfidentRule | None = None,
    image_ids: Sequence[int] | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    on_total: Callable[[int], None] | None = None,
    on_image: Callable[[int, str, dict[str, Any]], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PrefillSummary:
    """Pre-fill every ok image of the project that has no prefill row for the model version.

    model_version_id None: the current round's model version, else ``ensure_model_version``.
    rule None: ``ConfidentRule.for_backend(segmenter.name)``. limit: at most this many
    images processed. retry_failed: forget failed prefill rows first. A project that never
    had a round gets round 1 (this model version, no control arm). on_total(n pending); on_image(image_id, outcome, info) with outcome
    ``done`` | ``failed`` | ``skipped`` and info ``{"proposals", "confident", "seconds",
    "reason"}``. max_pixels: the decode limit (``Settings.max_image_pixels``).
    """
    rule = rule or ConfidentRule.for_backend(segmenter.name)
    with transaction(factory) as s:
        if s.get(Project, project_id) is None:
            raise NotFound(f"no project with id {project_id}")
        rnd = current_round(s, project_id=project_id)
        round_id = rnd.id if rnd is not None else None
        if model_version_id is None and rnd is not None:
            model_version_id = rnd.model_version_id
            found = s.get(ModelVersion, model_version_id) if model_version_id else None
            if found is not None and found.backend == "import":  # imported proposals' round
                model_version_id = None
        if model_version_id is None:
            mv = ensure_model_version(s, segmenter=segmenter)
        else:
            found = s.get(ModelVersion, model_version_id)
            if found is None:
                raise NotFound(f"no model version with id {model_version_id}")
            mv = found
        _check_model_version(mv, segmenter)
        mv_id, calibration = mv.id, mv.calibration
        if rnd is None:  # the first pre-fill opens round 1: no work outside a round by default
            first = ensure_first_round(s, project_id=project_id, model_version_id=mv_id)
            round_id = first.id if first is not None else None
        if calibration:
            _check_calibration(calibration, mv_id)
        if retry_failed:
            s.execute(
                delete(Prefill).where(
                    Prefill.model_version_id == mv_id,
                    Prefill.status == "failed",
                    Prefill.image_id.in_(select(Image.id).where(Image.project_id == project_id)),
                )
            )
    with factory() as s:
        total, todo = pending_images(
            s, project_id=project_id, model_version_id=mv_id, image_ids=image_ids
        )
    summary = PrefillSummary(model_version_id=mv_id, total=total, skipped=total - len(todo))
    if limit is not None:
        todo = todo[: max(limit, 0)]
    if on_total:
        on_total(len(todo))
    for image_id, uri, sha256 in todo:
        outcome, info = _prefill_one(
            factory,
            image_id=image_id,
            uri=uri,
            sha256=sha256,
            segmenter=segmenter,
            mv_id=mv_id,
            round_id=round_id,
            rule=rule,
            calibration=calibration,
            max_pixels=max_pixels,
        )
        if outcome == "done":
            summary.done += 1
            summary.proposals += info["proposals"]
            summary.confident += info["confident"]
        elif outcome == "failed":
            summary.failed += 1
            summary.failures.append((image_id, info["reason"]))
        else:
            summary.skipped += 1
        if outcome != "skipped":
            summary.seconds += info["seconds"]
        if on_image:
            on_image(image_id, outcome, info)
    return summary


def _already_done(factory: sessionmaker[Session], image_id: int, mv_id: int) -> bool:
    with factory() as s:
        q = select(Prefill.id).where(
            Prefill.image_id == image_id, Prefill.model_version_id == mv_id
        )
        return s.scalar(q) is not None


def _prefill_one(
    factory: sessionmaker[Session],
    *,
    image_id: int,
    uri: str,
    sha256: str | None,
    segmenter: Segmenter,
    mv_id: int,
    round_id: int | None,
    rule: ConfidentRule,
    calibration: dict[str, Any] | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[str, dict[str, Any]]:
    """Process one image in its own transaction; returns (outcome, info)."""
    info: dict[str, Any] = {"proposals": 0, "confident": 0, "seconds": 0.0, "reason": None}
    if _already_done(factory, image_id, mv_id):  # a concurrent worker got there first
        return "skipped", info
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    reason: str | None = None
    try:
        image = load_rgb(uri, max_pixels=max_pixels)  # a stored uri (file:// for odd names)
        size = (int(image.shape[0]), int(image.shape[1]))
        proposals = segmenter.propose(image, _embed(segmenter, sha256, image))
        confident, calibrated = score(proposals, size, rule, calibration)
        rows = _mask_rows(
            proposals,
            confident,
            calibrated,
            image_id=image_id,
            image_size=size,
            model_version_id=mv_id,
            round_id=round_id,
        )
    except (OSError, ValueError) as err:  # unreadable/corrupt image (ImageRejected), bad output
        reason = str(err) or type(err).__name__
    except Exception as err:  # noqa: BLE001 - one image's model error must not stop the batch
        log.exception("pre-fill of image %s failed", image_id)
        reason = f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - t0
    info["seconds"] = seconds
    n_conf = sum(1 for r in rows if r["confident"])
    try:
        with transaction(factory) as s:
            s.add(
                Prefill(
                    image_id=image_id,
                    model_version_id=mv_id,
                    status="failed" if reason else "done",
                    reason=reason,
                    n_proposals=len(rows),
                    n_confident=n_conf,
                    seconds=seconds,
                )
            )
            s.flush()  # the unique (image, model version) row first: a concurrent loser stops here
            if rows:
                s.execute(insert(Mask), rows)
    except IntegrityError:
        log.info("image %s was pre-filled concurrently; skipped", image_id)
        return "skipped", info
    PREFILL_IMAGES.labels(outcome="failed" if reason else "done").inc()
    if reason:
        info["reason"] = reason
        return "failed", info
    info["proposals"], info["confident"] = len(rows), n_conf
    return "done", info
