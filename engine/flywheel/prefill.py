"""Pre-fill: run a segmenter's automatic proposals over a project and store them as masks.

Every proposal is stored (``mask`` rows: source ``model``, status ``proposed``, COCO RLE,
XYWH bbox, area, predicted IoU, stability, point_coords, crop_box); the ``confident``
flag marks the ones the annotator sees pre-filled. The others stay hidden ("less confident")
until the annotator reveals them (``GET /api/images/{id}/masks?include=less_confident``,
logged as a ``reveal_less_confident`` event); summaries count only what was shown.

``engine.flywheel.confident_rule``: ``ConfidentRule.for_backend`` gives each backend's rule on its own score scale
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
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.claims import claim_images, release_claims, renew_claim
from db.errors import InvalidInput, NotFound
from db.model_versions import find_model_version, get_model_version
from db.models import Project
from db.prefills import (
    PAGE_SIZE,
    add_prefill,
    count_pending,
    forget_failed_prefills,
    pending_images,
    prefill_exists,
)
from db.rounds import current_round, ensure_first_round
from db.session import transaction
from engine.flywheel.confident_rule import ConfidentRule, score
from engine.flywheel.prefill_model import (
    check_calibration,
    check_model_version,
    ensure_model_version,
)
from engine.flywheel.prefill_rows import embed_image, mask_rows
from engine.imageio import DEFAULT_MAX_PIXELS, load_rgb
from engine.segment.protocol import Segmenter
from engine.telemetry import PREFILL_IMAGES

log = logging.getLogger("dataengine.prefill")


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
            found = (
                find_model_version(s, model_version_id=model_version_id)
                if model_version_id
                else None
            )
            if found is not None and found.backend == "import":  # imported proposals' round
                model_version_id = None
        if model_version_id is None:
            mv = ensure_model_version(s, segmenter=segmenter)
        else:
            mv = get_model_version(s, model_version_id=model_version_id)
        check_model_version(mv, segmenter)
        mv_id, calibration = mv.id, mv.calibration
        if rnd is None:  # the first pre-fill opens round 1: no work outside a round by default
            first = ensure_first_round(s, project_id=project_id, model_version_id=mv_id)
            round_id = first.id if first is not None else None
        if calibration:
            check_calibration(calibration, mv_id)
        if retry_failed:
            forget_failed_prefills(s, project_id=project_id, model_version_id=mv_id)
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
        return prefill_exists(s, image_id=image_id, model_version_id=mv_id)


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
    ``cache_embeddings``: write the embedding to the segmenter's cache (``embed_image``)."""
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
        emb = embed_image(segmenter, sha256, image, cache_embeddings=cache_embeddings)
        proposals = segmenter.propose(image, emb)
        confident, calibrated = score(proposals, size, rule, calibration)
        rows = mask_rows(
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
            add_prefill(s, image_id=image_id, model_version_id=mv_id, reason=reason,
                        n_confident=n_conf, seconds=seconds, mask_rows=rows)  # fmt: skip
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
