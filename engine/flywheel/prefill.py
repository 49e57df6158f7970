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
skipped. A killed run loses at most the image in flight. Concurrent workers claim images
in small batches (``db.claims``: a ``prefill_claim`` row with an expiry), so each image is
computed by one of them while its claim lives; a dead worker's claims expire and the others
take them over. The unique (image, model version) constraint stays the last guard (the
loser of a race past an expired claim rolls back and skips). Pending images are walked by
keyset pages and counted with ``SELECT count(*)``: memory is one page, not a project.
A bad image gets ``prefill.status = "failed"`` with the reason and never stops the batch.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, exists, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.claims import claim_images, release_claims, renew_claim
from db.errors import InvalidInput, NotFound
from db.models import Image, Mask, ModelVersion, Prefill, PrefillClaim, Project, utcnow
from db.pages import count_images
from db.rounds import current_round, ensure_first_round
from db.session import transaction
from engine.imageio import DEFAULT_MAX_PIXELS, load_rgb
from engine.masks import encode_rle_batch
from engine.segment.protocol import Embedding, Proposal, Segmenter
from engine.telemetry import PREFILL_IMAGES

log = logging.getLogger("dataengine.prefill")

RLE_CHUNK = 32  # masks encoded per pycocotools call (bounds the NHW bool stack in memory)
PAGE_SIZE = 500  # pending images read per keyset page


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
    claimed_elsewhere: int = 0  # pending, but under another worker's live claim when reached
    failed: int = 0
    proposals: int = 0
    confident: int = 0
    seconds: float = 0.0
    failures: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)

    @property
    def seconds_per_image(self) -> float | None:
        n = self.done + self.failed
        return self.seconds / n if n else None

    def add(self, image_id: int, outcome: str, info: dict[str, Any]) -> None:
        """Count one ``_prefill_one`` result."""
        if outcome == "done":
            self.done += 1
            self.proposals += info["proposals"]
            self.confident += info["confident"]
        elif outcome == "failed":
            self.failed += 1
            self.failures.append((image_id, info["reason"]))
        else:
            self.skipped += 1
        if outcome != "skipped":
            self.seconds += info["seconds"]


def _embed(
    segmenter: Any, sha256: str | None, image: np.ndarray, *, cache_embeddings: bool = True
) -> Embedding:
    """The image's embedding through the segmenter's cache when it has one: read (and with
    ``cache_embeddings`` written) under the file's sha256. Without writing, a fresh embedding
    still gets the cache's fp16 round trip, so proposals do not depend on the cache."""
    cache = getattr(segmenter, "cache", None)
    if not sha256 or not hasattr(segmenter, "embed_cached"):
        return segmenter.embed(image)
    if cache_embeddings or cache is None:
        return segmenter.embed_cached(sha256, lambda: image)
    hit = cache.get(sha256)
    if hit is not None:
        return hit
    from engine.segment.embedding_cache import roundtrip

    return roundtrip(sha256, segmenter.inner.embed(image))


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


def _pending_where(
    model_version_id: int, *, worker_id: str | None = None, now: Any = None
) -> list[Any]:
    """Conditions on ``Image`` rows: no prefill row for the model version and, with
    ``worker_id``, no live claim of another worker."""
    conds: list[Any] = [
        ~exists().where(Prefill.image_id == Image.id, Prefill.model_version_id == model_version_id)
    ]
    if worker_id is not None:
        conds.append(
            ~exists().where(
                PrefillClaim.image_id == Image.id,
                PrefillClaim.model_version_id == model_version_id,
                PrefillClaim.worker_id != worker_id,
                PrefillClaim.expires_at >= (now or utcnow()),
            )
        )
    return conds


def count_pending(
    session: Session,
    *,
    project_id: int,
    model_version_id: int,
    image_ids: Sequence[int] | None = None,
) -> tuple[int, int]:
    """(ok images considered, of which without a prefill row): two ``SELECT count(*)``."""
    where = [] if image_ids is None else [Image.id.in_(list(image_ids))]
    total = count_images(session, project_id=project_id, where=where)
    if total == 0:
        return 0, 0
    pending = count_images(
        session, project_id=project_id, where=[*where, *_pending_where(model_version_id)]
    )
    return total, pending


def pending_images(
    session: Session,
    *,
    project_id: int,
    model_version_id: int,
    after_id: int = 0,
    limit: int = PAGE_SIZE,
    image_ids: Sequence[int] | None = None,
    worker_id: str | None = None,
) -> list[tuple[int, str, str | None]]:
    """One keyset page: up to ``limit`` [(id, uri, sha256)] of ok images with id > ``after_id``
    and no prefill row for the model version, ascending id. With ``worker_id``, images under
    another worker's live claim are left out. Count them with ``count_pending``."""
    where = [Image.id > after_id, *_pending_where(model_version_id, worker_id=worker_id)]
    if image_ids is not None:
        where.append(Image.id.in_(list(image_ids)))
    q = (
        select(Image.id, Image.uri, Image.sha256)
        .where(Image.project_id == project_id, Image.status == "ok", *where)
        .order_by(Image.id)
        .limit(limit)
    )
    return [(int(r[0]), r[1], r[2]) for r in session.execute(q).all()]


def new_worker_id() -> str:
    """``<hostname>:<pid>:<8 hex>``: unique per process run (claims and heartbeats)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Claims:
    """How a pre-fill run claims images: ``worker_id`` (default ``new_worker_id()``), claims
    live ``seconds`` (``DATAENGINE_CLAIM_SECONDS``) and are taken ``batch`` images at a time
    (``DATAENGINE_CLAIM_BATCH``); a claim older than a third of its life is renewed before
    its image is computed."""

    worker_id: str = field(default_factory=new_worker_id)
    seconds: float = 300.0
    batch: int = 4

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise InvalidInput(f"claim seconds must be > 0, got {self.seconds}")
        if self.batch < 1:
            raise InvalidInput(f"claim batch must be >= 1, got {self.batch}")


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
    claims: Claims | None = None,
    cache_embeddings: bool = False,
    page_size: int = PAGE_SIZE,
) -> PrefillSummary:
    """Pre-fill every ok image of the project that has no prefill row for the model version.

    model_version_id None: the current round's model version, else ``ensure_model_version``.
    rule None: ``ConfidentRule.for_backend(segmenter.name)``. limit: at most this many
    images processed. retry_failed: forget failed prefill rows first. A project that never
    had a round gets round 1 (this model version, no control arm). on_total(n pending); on_image(image_id, outcome, info) with outcome
    ``done`` | ``failed`` | ``skipped`` and info ``{"proposals", "confident", "seconds",
    "reason"}``. max_pixels: the decode limit (``Settings.max_image_pixels``).

    The pending images are walked by keyset pages of ``page_size`` (memory: one page) and
    claimed ``claims.batch`` at a time (``db.claims``): several workers on one project
    compute each image once; images under another worker's live claim are left to it
    (counted in ``claimed_elsewhere``). cache_embeddings: write each embedding to the
    segmenter's cache (off by default: a bulk pass would fill it with embeddings nobody
    may open); cached ones are read either way.
    """
    rule = rule or ConfidentRule.for_backend(segmenter.name)
    claims = claims or Claims()
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
        total, pending = count_pending(
            s, project_id=project_id, model_version_id=mv_id, image_ids=image_ids
        )
    summary = PrefillSummary(model_version_id=mv_id, total=total, skipped=total - pending)
    budget = pending if limit is None else min(max(limit, 0), pending)
    if on_total:
        on_total(budget)
    step = partial(
        _prefill_one,
        factory,
        segmenter=segmenter,
        mv_id=mv_id,
        round_id=round_id,
        rule=rule,
        calibration=calibration,
        max_pixels=max_pixels,
        worker_id=claims.worker_id,
        cache_embeddings=cache_embeddings,
    )
    last = 0
    while budget > 0:  # the idle pass (nothing pending) stops at the two counts
        with factory() as s:
            page = pending_images(
                s,
                project_id=project_id,
                model_version_id=mv_id,
                after_id=last,
                limit=page_size,
                image_ids=image_ids,
                worker_id=claims.worker_id,
            )
        if not page:
            break
        last = page[-1][0]
        for start in range(0, len(page), claims.batch):
            batch = page[start : start + min(claims.batch, budget)]
            budget = _claimed_batch(factory, batch, step, claims, mv_id, summary, budget, on_image)
            if budget <= 0:
                break
    return summary


def _claimed_batch(
    factory: sessionmaker[Session],
    batch: Sequence[tuple[int, str, str | None]],
    step: Callable[..., tuple[str, dict[str, Any]]],
    claims: Claims,
    mv_id: int,
    summary: PrefillSummary,
    budget: int,
    on_image: Callable[[int, str, dict[str, Any]], None] | None,
) -> int:
    """Claim ``batch``, pre-fill the images this worker got, give back what it did not reach
    (an exception); returns the budget left."""
    with transaction(factory) as s:
        mine = set(
            claim_images(
                s,
                image_ids=[b[0] for b in batch],
                model_version_id=mv_id,
                worker_id=claims.worker_id,
                seconds=claims.seconds,
            )
        )
    claimed_at = time.monotonic()
    todo = [b for b in batch if b[0] in mine]
    summary.claimed_elsewhere += len(batch) - len(todo)
    try:
        while todo:
            image_id, uri, sha256 = todo[0]
            if time.monotonic() - claimed_at > claims.seconds / 3:
                with transaction(factory) as s:
                    kept = renew_claim(
                        s,
                        image_id=image_id,
                        model_version_id=mv_id,
                        worker_id=claims.worker_id,
                        seconds=claims.seconds,
                    )
                claimed_at = time.monotonic()
                if not kept:  # expired while we worked and another worker took it over
                    todo.pop(0)
                    summary.claimed_elsewhere += 1
                    continue
            outcome, info = step(image_id=image_id, uri=uri, sha256=sha256)
            todo.pop(0)
            budget -= 1
            summary.add(image_id, outcome, info)
            if on_image:
                on_image(image_id, outcome, info)
    finally:
        if todo:  # interrupted: let the others have them now, not after expiry
            with transaction(factory) as s:
                release_claims(
                    s,
                    worker_id=claims.worker_id,
                    model_version_id=mv_id,
                    image_ids=[b[0] for b in todo],
                )
    return budget


def _already_done(factory: sessionmaker[Session], image_id: int, mv_id: int) -> bool:
    with factory() as s:
        q = select(Prefill.id).where(
            Prefill.image_id == image_id, Prefill.model_version_id == mv_id
        )
        return s.scalar(q) is not None


def _release(
    factory: sessionmaker[Session], worker_id: str | None, mv_id: int, image_id: int
) -> None:
    """Drop this worker's claim on an image it will not pre-fill (someone else did)."""
    if worker_id is not None:
        with transaction(factory) as s:
            release_claims(s, worker_id=worker_id, model_version_id=mv_id, image_ids=[image_id])


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
    worker_id: str | None = None,
    cache_embeddings: bool = False,
) -> tuple[str, dict[str, Any]]:
    """Process one image; its masks and prefill row are written in one transaction (which
    also deletes the image's ``prefill_claim`` row when ``worker_id`` is given: the prefill
    row now marks it done). Returns (outcome ``done`` | ``failed`` | ``skipped``, info).
    ``cache_embeddings``: write the embedding to the segmenter's cache (``_embed``)."""
    info: dict[str, Any] = {"proposals": 0, "confident": 0, "seconds": 0.0, "reason": None}
    if _already_done(factory, image_id, mv_id):  # a concurrent worker got there first
        _release(factory, worker_id, mv_id, image_id)
        return "skipped", info
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    reason: str | None = None
    try:
        image = load_rgb(uri, max_pixels=max_pixels)  # a stored uri (file:// for odd names)
        size = (int(image.shape[0]), int(image.shape[1]))
        emb = _embed(segmenter, sha256, image, cache_embeddings=cache_embeddings)
        proposals = segmenter.propose(image, emb)
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
            if worker_id is not None:
                release_claims(s, worker_id=worker_id, model_version_id=mv_id, image_ids=[image_id])
    except IntegrityError:
        log.info("image %s was pre-filled concurrently; skipped", image_id)
        _release(factory, worker_id, mv_id, image_id)
        return "skipped", info
    PREFILL_IMAGES.labels(outcome="failed" if reason else "done").inc()
    if reason:
        info["reason"] = reason
        return "failed", info
    info["proposals"], info["confident"] = len(rows), n_conf
    return "done", info
