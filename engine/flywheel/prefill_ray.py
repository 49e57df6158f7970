"""Bulk pre-fill and embedding on a Ray cluster (Ray Data): the optional ``ray`` extra.

``prefill_project_ray`` does what ``engine.flywheel.prefill.prefill_project`` does (same
proposals, same confident rule, same ``prefill`` and ``mask`` rows), as a streaming
pipeline over a cluster:

1. **pages** (the driver): pending image ids are walked by keyset (``id > last``, ``LIMIT
   page_size``), and only each page's first and last id become a dataset row, so the
   driver holds O(pages) ints, never the image list;
2. **read** (``flat_map``, CPU tasks): each page's pending ``(id, uri, sha256)`` rows;
3. **decode** (``map_batches``, CPU tasks): ``engine.imageio.load_rgb`` per image, HWC uint8
   RGB; an unreadable file becomes that image's ``failed`` reason, never a batch error;
4. **model** (``map_batches`` on an actor pool of ``actors`` actors, ``gpus_per_actor`` GPUs
   each): the segmenter is built once per actor (``__init__``); a batch of images goes
   through the encoder at once where the backend has ``embed_batch`` (SAM: Bx3x1024x1024),
   else one by one (classical); then ``propose``, the confident rule / calibration, and
   COCO RLE encoding (so only compact rows travel on);
5. **write** (``map_batches``, CPU tasks): per image one transaction: ``INSERT ... ON
   CONFLICT (image_id, model_version_id) DO NOTHING RETURNING id`` on ``prefill``; only the
   writer whose row was inserted inserts the masks, in the same transaction. A second run,
   a concurrent worker or a retried task therefore never duplicates anything.

The driver iterates the write stage's output (``iter_batches``) and reports every image
(``on_image``), which is what the CLI's progress bar shows. Resumable: a killed run (driver,
actor or node) leaves only whole images behind; run it again and only images without a
``prefill`` row are processed (deleting k results redoes exactly k).

``embed_project_ray`` is the same pipeline for ``dataengine embed``: the decode stage skips
images already in the embedding cache, the model stage embeds (batched) and stores them.

Every node needs this package installed and must reach the database and the image uris
(and, for ``embed``, the cache folder) at the same paths: the compose ``ray`` profile
shares the ``data`` volume and PostgreSQL. SQLite works on one machine (local cluster).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db.errors import InvalidInput, NotFound
from db.model_versions import get_model_version
from db.models import ModelVersion
from db.prefills import count_embeddable, count_pending, forget_failed_prefills
from db.projects import project_name
from db.rounds import current_round, ensure_first_round
from db.session import make_engine, make_session_factory, transaction
from engine.flywheel.confident_rule import ConfidentRule
from engine.flywheel.prefill import PrefillSummary
from engine.flywheel.prefill_model import check_calibration
from engine.flywheel.prefill_ray_stages import (
    DB_STAGE_CPUS,
    DECODE_CPUS,
    PAGE_SIZE,
    ModelStage,
    decode,
    embed_all,
    page_bounds,
    read_page,
    write,
)
from engine.flywheel.ray_cluster import (
    SegmenterBuilder,
    import_ray,
)
from engine.imageio import DEFAULT_MAX_PIXELS

log = logging.getLogger("dataengine.prefill_ray")

# --- the driver --------------------------------------------------------------------------


@dataclass(frozen=True)
class RayOptions:
    """How the pipeline uses the cluster.

    ``actors``: model actors (one segmenter each); ``gpus_per_actor``: GPUs each reserves
    (0: CPU; fractions share a GPU); ``cpus_per_actor``: CPUs each reserves; ``batch_size``:
    images per model call (the SAM encoder's B); ``page_size``: ids per keyset page.
    """

    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    batch_size: int = 4
    page_size: int = PAGE_SIZE

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise InvalidInput(f"--actors must be >= 1, got {self.actors}")
        if self.gpus_per_actor < 0 or self.cpus_per_actor < 0:
            raise InvalidInput("--gpus-per-actor and CPUs per actor must be >= 0")
        if self.batch_size < 1:
            raise InvalidInput(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.page_size < 1:
            raise InvalidInput(f"page size must be >= 1, got {self.page_size}")


def _model_stage_args(opts: RayOptions) -> dict[str, Any]:
    from ray.data import ActorPoolStrategy

    args: dict[str, Any] = {
        # the pool grows to ``actors`` with the backlog: a short run (one page) starts one
        "compute": ActorPoolStrategy(min_size=1, max_size=opts.actors),
        "num_cpus": opts.cpus_per_actor,
    }
    if opts.gpus_per_actor:
        args["num_gpus"] = opts.gpus_per_actor
    return args


def _page_items(
    factory: sessionmaker[Session],
    *,
    project_id: int,
    model_version_id: int | None,
    page_size: int,
) -> list[dict[str, int]]:
    """``page_bounds`` as the ``{"lo": first id, "hi": last id}`` items the pipeline reads."""
    return [
        {"lo": lo, "hi": hi}
        for lo, hi in page_bounds(
            factory, project_id=project_id, model_version_id=model_version_id, page_size=page_size
        )
    ]


def _decoded(
    ray: Any,
    pages: list[dict[str, int]],
    *,
    db_url: str,
    project_id: int,
    mv_id: int | None,
    batch_size: int,
    decode_kwargs: dict[str, Any],
) -> Any:
    """The first two stages of both pipelines: each page's rows read from the database
    (``read_page``), then decoded in batches of ``batch_size`` (``decode(**decode_kwargs)``).
    Returns the Ray Dataset, ready for the model stage."""
    return (
        ray.data.from_items(pages)
        .flat_map(
            read_page,
            fn_kwargs={"db_url": db_url, "project_id": project_id, "mv_id": mv_id},
            num_cpus=DB_STAGE_CPUS,
        )
        .map_batches(
            decode,
            batch_size=batch_size,
            batch_format="numpy",
            fn_kwargs=decode_kwargs,
            num_cpus=DECODE_CPUS,
        )
    )


def _prepare(
    factory: sessionmaker[Session], *, project_id: int, model_version_id: int, retry_failed: bool
) -> tuple[ModelVersion, int | None]:
    """Check project and model version, open round 1 if the project has none, forget failed
    rows when asked; (model version, round id)."""
    with transaction(factory) as s:
        if project_name(s, project_id=project_id) is None:
            raise NotFound(f"no project with id {project_id}")
        mv = get_model_version(s, model_version_id=model_version_id)
        rnd = current_round(s, project_id=project_id)
        round_id = rnd.id if rnd is not None else None
        if rnd is None:
            first = ensure_first_round(s, project_id=project_id, model_version_id=mv.id)
            round_id = first.id if first is not None else None
        if mv.calibration:
            check_calibration(mv.calibration, mv.id)
        if retry_failed:
            forget_failed_prefills(s, project_id=project_id, model_version_id=mv.id)
    return mv, round_id


def prefill_project_ray(
    db_url: str,
    *,
    project_id: int,
    model_version_id: int,
    build: SegmenterBuilder,
    options: RayOptions | None = None,
    rule: ConfidentRule | None = None,
    retry_failed: bool = False,
    on_total: Callable[[int], None] | None = None,
    on_image: Callable[[int, str, dict[str, Any]], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PrefillSummary:
    """Pre-fill the project's pending ok images as ``model_version_id`` on the connected Ray
    cluster (``connect`` first); the same rows as ``prefill_project``.

    ``build()`` makes the segmenter in each actor (``builder(...)``); it must be the model
    version's (its ``model_key`` is checked). rule None: the backend's default. on_total(n
    pending), on_image(image_id, outcome, info) as ``prefill_project``'s, from the stream.
    """
    ray = import_ray()
    opts = options or RayOptions()
    factory = make_session_factory(make_engine(db_url))
    try:
        mv, round_id = _prepare(
            factory,
            project_id=project_id,
            model_version_id=model_version_id,
            retry_failed=retry_failed,
        )
        rule = rule or ConfidentRule.for_backend(mv.backend)
        with factory() as s:
            total, pending = count_pending(s, project_id=project_id, model_version_id=mv.id)
        pages = _page_items(
            factory, project_id=project_id, model_version_id=mv.id, page_size=opts.page_size
        )
    finally:
        factory.kw["bind"].dispose()
    summary = PrefillSummary(
        model_version_id=mv.id, total=int(total or 0), skipped=int(total or 0) - int(pending or 0)
    )
    if on_total:
        on_total(int(pending or 0))
    if not pages:
        return summary
    ds = (
        _decoded(
            ray,
            pages,
            db_url=db_url,
            project_id=project_id,
            mv_id=mv.id,
            batch_size=opts.batch_size,
            decode_kwargs={"max_pixels": max_pixels},
        )
        .map_batches(
            ModelStage,
            batch_size=opts.batch_size,
            batch_format="numpy",
            fn_constructor_args=(build,),
            fn_constructor_kwargs={
                "model_key": (mv.params or {}).get("model_key"),
                "mv_id": mv.id,
                "round_id": round_id,
                "rule": rule.as_dict(),
                "calibration": mv.calibration,
            },
            **_model_stage_args(opts),
        )
        .map_batches(
            write,
            batch_size=opts.batch_size,
            batch_format="numpy",
            fn_kwargs={"db_url": db_url, "mv_id": mv.id},
            num_cpus=DB_STAGE_CPUS,
        )
    )
    for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for i, image_id in enumerate(out["image_id"]):
            outcome = str(out["outcome"][i])
            info = {
                "proposals": int(out["n_proposals"][i]) if outcome == "done" else 0,
                "confident": int(out["n_confident"][i]) if outcome == "done" else 0,
                "seconds": float(out["seconds"][i]),
                "reason": (str(out["reason"][i]) or None) if outcome == "failed" else None,
            }
            if outcome == "done":
                summary.done += 1
                summary.proposals += info["proposals"]
                summary.confident += info["confident"]
            elif outcome == "failed":
                summary.failed += 1
                summary.failures.append((int(image_id), str(info["reason"])))
            else:
                summary.skipped += 1
            if outcome != "skipped":
                summary.seconds += info["seconds"]
            if on_image:
                on_image(int(image_id), outcome, info)
    return summary


class _EmbedStage:
    """The model stage of ``embed_project_ray`` (an actor): embeds (batched) and stores each
    embedding in the segmenter's cache (``build`` must give a cached segmenter)."""

    def __init__(self, build: SegmenterBuilder) -> None:
        self.segmenter: Any = build()
        if not hasattr(self.segmenter, "cache"):
            raise InvalidInput("embed on Ray needs a segmenter with an embedding cache (cache_dir)")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch["image_id"])
        outcome = ["cached" if c else "failed" for c in batch["cached"]]
        reasons = list(batch["error"])
        todo = [i for i in range(n) if not batch["cached"][i] and not reasons[i]]
        embeddings = embed_all(self.segmenter, [batch["image"][i] for i in todo])
        for i, emb in zip(todo, embeddings, strict=True):
            if isinstance(emb, Exception):
                reasons[i] = f"{type(emb).__name__}: {emb}"
                continue
            self.segmenter.cache.put(str(batch["sha256"][i]), emb)
            outcome[i] = "embedded"
        return {
            "image_id": batch["image_id"],
            "outcome": np.array(outcome, dtype=object),
            "reason": np.array(reasons, dtype=object),
        }


def embed_project_ray(
    db_url: str,
    *,
    project_id: int,
    build: SegmenterBuilder,
    model_key: str,
    cache_dir: str,
    options: RayOptions | None = None,
    on_total: Callable[[int], None] | None = None,
    on_image: Callable[[int, str, str | None], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, int]:
    """Warm the embedding cache (``cache_dir``, shared by every node) for the project's ok
    images on the connected Ray cluster. Returns counts embedded / cached / failed;
    on_image(image_id, outcome, reason) per image from the stream."""
    ray = import_ray()
    opts = options or RayOptions()
    factory = make_session_factory(make_engine(db_url))
    try:
        with factory() as s:
            if project_name(s, project_id=project_id) is None:
                raise NotFound(f"no project with id {project_id}")
            total = count_embeddable(s, project_id=project_id)
        pages = _page_items(
            factory, project_id=project_id, model_version_id=None, page_size=opts.page_size
        )
    finally:
        factory.kw["bind"].dispose()
    counts = {"embedded": 0, "cached": 0, "failed": 0}
    if on_total:
        on_total(int(total or 0))
    if not pages:
        return counts
    ds = _decoded(
        ray,
        pages,
        db_url=db_url,
        project_id=project_id,
        mv_id=None,
        batch_size=opts.batch_size,
        decode_kwargs={"max_pixels": max_pixels, "cache_dir": cache_dir, "model_key": model_key},
    ).map_batches(
        _EmbedStage,
        batch_size=opts.batch_size,
        batch_format="numpy",
        fn_constructor_args=(build,),
        **_model_stage_args(opts),
    )
    for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for i, image_id in enumerate(out["image_id"]):
            outcome = str(out["outcome"][i])
            counts[outcome] += 1
            if on_image:
                on_image(int(image_id), outcome, str(out["reason"][i]) or None)
    return counts
