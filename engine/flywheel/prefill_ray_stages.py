"""The stages of the Ray pre-fill and embedding pipelines (``engine.flywheel.prefill_ray``):
page bounds and page reads, decode, the model actor, the writer. Each runs in a Ray task or
actor; the database side keeps one engine per database url per worker process."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db.errors import InvalidInput
from db.prefills import add_prefill_unless_done, todo_ids, todo_rows
from db.session import make_engine, make_session_factory, transaction
from engine.flywheel.confident_rule import ConfidentRule
from engine.flywheel.confident_rule import score as score_proposals
from engine.flywheel.prefill_rows import mask_rows
from engine.flywheel.ray_cluster import SegmenterBuilder
from engine.imageio import load_rgb
from engine.segment.protocol import Embedding

log = logging.getLogger("dataengine.prefill_ray")

PAGE_SIZE = 1000  # image ids per keyset page (one dataset row each)
# CPUs Ray reserves per task of the database stages (read, write: they wait on the database)
# and of the decode stage. Distinct from the model actors' reservation, which also keeps
# Ray from fusing decode into the model actors: decoding then overlaps the model.
DB_STAGE_CPUS = 0.1
DECODE_CPUS = 0.5


# --- the database side, per process ------------------------------------------------------

_FACTORIES: dict[str, sessionmaker[Session]] = {}


def _factory(db_url: str) -> sessionmaker[Session]:
    """One engine per database url per worker process (tasks reuse Ray's workers)."""
    found = _FACTORIES.get(db_url)
    if found is None:
        found = _FACTORIES[db_url] = make_session_factory(make_engine(db_url))
    return found


def page_bounds(
    factory: sessionmaker[Session],
    *,
    project_id: int,
    model_version_id: int | None,
    page_size: int = PAGE_SIZE,
) -> Iterator[tuple[int, int]]:
    """(first id, last id) of each keyset page of the project's pending ok images (all ok
    images with a sha256 when ``model_version_id`` is None), in id order; O(page) memory."""
    last = 0
    while True:
        with factory() as s:
            ids = todo_ids(
                s,
                project_id=project_id,
                model_version_id=model_version_id,
                after_id=last,
                limit=page_size,
            )
        if not ids:
            return
        yield ids[0], ids[-1]
        last = ids[-1]


def read_page(
    page: dict[str, Any], *, db_url: str, project_id: int, mv_id: int | None
) -> list[dict[str, Any]]:
    """Stage 2: a page's (image_id, uri, sha256) rows still to do."""
    lo, hi = int(page["lo"]), int(page["hi"])
    with _factory(db_url)() as s:
        rows = todo_rows(s, project_id=project_id, model_version_id=mv_id, lo=lo, hi=hi)
    return [{"image_id": r[0], "uri": r[1], "sha256": r[2] or ""} for r in rows]


_NO_IMAGE = np.zeros((1, 1, 3), dtype=np.uint8)  # placeholder where decoding failed


def decode(
    batch: dict[str, np.ndarray],
    *,
    max_pixels: int,
    cache_dir: str | None = None,
    model_key: str | None = None,
) -> dict[str, Any]:
    """Stage 3: decode each image (HWC uint8 RGB); with ``cache_dir``/``model_key`` (embed),
    images already in the embedding cache are passed on as ``cached`` without decoding."""
    cache = None
    if cache_dir is not None and model_key is not None:
        from engine.segment.embedding_cache import EmbeddingCache

        cache = EmbeddingCache(cache_dir, model_key, max_items=1)
    images, errors, cached, seconds = [], [], [], []
    for uri, sha in zip(batch["uri"], batch["sha256"], strict=True):
        t0 = time.perf_counter()
        hit = cache is not None and cache.contains(str(sha))
        image, error = _NO_IMAGE, ""
        if not hit:
            try:
                image = load_rgb(str(uri), max_pixels=max_pixels)
            except (OSError, ValueError) as err:  # ImageRejected is a ValueError
                error = str(err) or type(err).__name__
        images.append(image)
        errors.append(error)
        cached.append(hit)
        seconds.append(time.perf_counter() - t0)
    return {
        "image_id": batch["image_id"],
        "sha256": batch["sha256"],
        "image": images,
        "error": np.array(errors, dtype=object),
        "cached": np.array(cached, dtype=bool),
        "seconds": np.array(seconds, dtype=np.float64),
    }


def embed_all(segmenter: Any, images: Sequence[np.ndarray]) -> list[Embedding | Exception]:
    """Embeddings of ``images``: one batched encoder call when the backend has one
    (``embed_batch``), else (or when the batch fails) image by image; a failing image gets
    its exception in place of an embedding."""
    inner = getattr(segmenter, "inner", segmenter)
    if len(images) > 1 and hasattr(inner, "embed_batch"):
        try:
            return list(inner.embed_batch(list(images)))
        except (RuntimeError, ValueError) as err:  # e.g. out of memory: fall back per image
            log.warning("batched embed of %d images failed (%s); one by one", len(images), err)
    out: list[Embedding | Exception] = []
    for image in images:
        try:
            out.append(inner.embed(image))
        except Exception as err:  # noqa: BLE001 - one image's model error must not stop a batch
            out.append(err)
    return out


class ModelStage:
    """Stage 4 (an actor): the segmenter is built once, in ``__init__``."""

    def __init__(
        self,
        build: SegmenterBuilder,
        *,
        model_key: str | None,
        mv_id: int,
        round_id: int | None,
        rule: dict[str, Any],
        calibration: dict[str, Any] | None,
    ) -> None:
        self.segmenter = build()
        if model_key is not None and self.segmenter.model_key != model_key:
            raise InvalidInput(
                f"the actor's segmenter is {self.segmenter.model_key}, the run's model version "
                f"is {model_key}: give every node the same checkpoint"
            )
        self.mv_id, self.round_id = mv_id, round_id
        self.rule = ConfidentRule(**rule)
        self.calibration = calibration

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch["image_id"])
        status, reasons, rows_json = ["failed"] * n, list(batch["error"]), [""] * n
        n_prop, n_conf = np.zeros(n, np.int64), np.zeros(n, np.int64)
        seconds = np.asarray(batch["seconds"], dtype=np.float64).copy()
        todo = [i for i in range(n) if not reasons[i]]
        t0 = time.perf_counter()
        embeddings = embed_all(self.segmenter, [batch["image"][i] for i in todo])
        share = (time.perf_counter() - t0) / max(len(todo), 1)
        for i, emb in zip(todo, embeddings, strict=True):
            t1 = time.perf_counter()
            image = np.asarray(batch["image"][i])
            try:
                if isinstance(emb, Exception):
                    raise emb
                size = (int(image.shape[0]), int(image.shape[1]))
                proposals = self.segmenter.propose(image, emb)
                confident, calibrated = score_proposals(
                    proposals, size, self.rule, self.calibration
                )
                rows = mask_rows(
                    proposals,
                    confident,
                    calibrated,
                    image_id=int(batch["image_id"][i]),
                    image_size=size,
                    model_version_id=self.mv_id,
                    round_id=self.round_id,
                )
                status[i], rows_json[i] = "done", json.dumps(rows)
                n_prop[i], n_conf[i] = len(rows), sum(1 for r in rows if r["confident"])
            except (OSError, ValueError) as err:
                reasons[i] = str(err) or type(err).__name__
            except Exception as err:  # noqa: BLE001 - one image's model error must not stop the batch
                log.exception("pre-fill of image %s failed", batch["image_id"][i])
                reasons[i] = f"{type(err).__name__}: {err}"
            seconds[i] += share + time.perf_counter() - t1
        return {
            "image_id": batch["image_id"],
            "status": np.array(status, dtype=object),
            "reason": np.array(reasons, dtype=object),
            "rows": np.array(rows_json, dtype=object),
            "n_proposals": n_prop,
            "n_confident": n_conf,
            "seconds": seconds,
        }


def write(batch: dict[str, Any], *, db_url: str, mv_id: int) -> dict[str, Any]:
    """Stage 5: per image one transaction (prefill row on conflict do nothing; the masks only
    when this writer's row went in). Outcome per image: done | failed | skipped."""
    factory = _factory(db_url)
    outcomes = []
    for i, image_id in enumerate(batch["image_id"]):
        failed = batch["status"][i] != "done"
        with transaction(factory) as s:
            won = add_prefill_unless_done(
                s,
                image_id=int(image_id),
                model_version_id=mv_id,
                failed=failed,
                reason=batch["reason"][i] or None,
                n_proposals=int(batch["n_proposals"][i]),
                n_confident=int(batch["n_confident"][i]),
                seconds=float(batch["seconds"][i]),
                mask_rows=json.loads(batch["rows"][i]) if not failed and batch["rows"][i] else (),
            )
        outcomes.append("skipped" if won is None else ("failed" if failed else "done"))
    return {
        "image_id": batch["image_id"],
        "outcome": np.array(outcomes, dtype=object),
        "reason": batch["reason"],
        "n_proposals": batch["n_proposals"],
        "n_confident": batch["n_confident"],
        "seconds": batch["seconds"],
    }
